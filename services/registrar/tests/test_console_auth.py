"""Console accounts: login, sessions, CSRF, the rate limit and the separate listener."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import Engine, select

from rbr_registrar.console.accounts import Accounts
from rbr_registrar.console.web import LOGIN_CSRF_COOKIE
from rbr_runtime.db.tables import audit_log
from rbr_testing.console import PASSWORD, add_user, csrf_token, logged_in, login
from rbr_testing.registry import TEST_OPERATOR_KEY, RegistrarFactory


def cookie_header(answer: httpx.Response, name: str) -> str:
    for header in answer.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return header
    raise AssertionError(f"no {name} cookie set")


def test_root_and_pages_lead_to_the_login_page(registrar_factory: RegistrarFactory) -> None:
    registrar = registrar_factory()
    with registrar.console_client() as client:
        root = client.get("/")
        assert root.status_code == 307
        assert root.headers["location"] == "/console/"
        page = client.get("/console/?state=pending")
        assert page.status_code == 303
        assert page.headers["location"] == "/console/login?next=/console/%3Fstate%3Dpending"
        form = client.get("/console/login")
        assert form.status_code == 200
        assert 'name="password"' in form.text
        assert "script-src 'self'" in form.headers["content-security-policy"]
        assert form.headers["x-frame-options"] == "DENY"
        assert form.headers["cache-control"] == "no-store"
        script = client.get("/console/static/htmx.min.js")
        assert script.status_code == 200
        assert "no-store" not in script.headers.get("cache-control", "")
        assert "script-src 'self'" in script.headers["content-security-policy"]


def test_login_sets_a_safe_cookie_and_a_new_session_id(
    registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    add_user(mysql_engine, "ada", "operator")
    registrar = registrar_factory()
    with registrar.console_client() as client:
        client.cookies.set("rbr_session", "chosen-by-an-attacker", domain="127.0.0.1")
        answer = login(client, "ada")
        assert answer.status_code == 303
        cookie = cookie_header(answer, "rbr_session")
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie or "samesite=lax" in cookie.lower()
        assert "Secure" not in cookie  # plain HTTP, and RBR_CONSOLE_SECURE_COOKIE unset
        first = client.cookies["rbr_session"]
        assert first != "chosen-by-an-attacker"
        assert "ada" in client.get("/console/").text

        again = login(client, "ada")
        assert again.status_code == 303
        second = client.cookies["rbr_session"]
        assert second != first
    with registrar.console_client(cookies={"rbr_session": first}) as stale:
        assert stale.get("/console/").status_code == 303  # the earlier session ended at login


def test_cookie_is_secure_when_the_setting_says_so(
    registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    add_user(mysql_engine, "ada", "viewer")
    registrar = registrar_factory(console_secure_cookie=True)
    with registrar.console_client() as client:
        form = client.get("/console/login")
        assert "Secure" in cookie_header(form, "rbr_login_csrf")
        token = csrf_token(form.text)
        # The client keeps Secure cookies to HTTPS: send the form's cookie by hand.
        answer = client.post(
            "/console/login",
            data={"username": "ada", "password": PASSWORD, "csrf_token": token},
            headers={"Cookie": f"rbr_login_csrf={token}"},
        )
        assert answer.status_code == 303
        assert "Secure" in cookie_header(answer, "rbr_session")


def test_wrong_password_and_disabled_account_are_refused(
    registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    add_user(mysql_engine, "ada", "viewer")
    add_user(mysql_engine, "bob", "viewer")
    Accounts(mysql_engine).set_disabled("bob", True)
    registrar = registrar_factory()
    with registrar.console_client() as client:
        wrong = login(client, "ada", "not the password")
        assert wrong.status_code == 401
        assert "wrong user name or password" in wrong.text
        assert "rbr_session" not in client.cookies
        assert login(client, "bob").status_code == 401
        assert login(client, "nobody").status_code == 401


def test_logout_ends_the_session(registrar_factory: RegistrarFactory, mysql_engine: Engine) -> None:
    add_user(mysql_engine, "ada", "viewer")
    registrar = registrar_factory()
    with registrar.console_client() as client:
        token = logged_in(client, "ada")
        session_id = client.cookies["rbr_session"]
        refused = client.post("/console/logout")
        assert refused.status_code == 403
        assert "CSRF token" in refused.text
        out = client.post("/console/logout", data={"csrf_token": token})
        assert out.status_code == 303
        assert out.headers["location"] == "/console/login"
    with registrar.console_client(cookies={"rbr_session": session_id}) as replay:
        assert replay.get("/console/").status_code == 303
    with mysql_engine.connect() as connection:
        entries = connection.execute(
            select(audit_log.c.actor, audit_log.c.action).order_by(audit_log.c.id)
        ).all()
    assert [tuple(e) for e in entries] == [("ada", "console.login"), ("ada", "console.logout")]


def test_login_form_needs_its_csrf_token(
    registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    add_user(mysql_engine, "ada", "viewer")
    registrar = registrar_factory()
    with registrar.console_client() as client:
        forged = client.post("/console/login", data={"username": "ada", "password": PASSWORD})
        assert forged.status_code == 403
        assert "rbr_session" not in client.cookies


def test_failed_logins_are_rate_limited_per_user_and_address(
    registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    add_user(mysql_engine, "ada", "viewer")
    add_user(mysql_engine, "bob", "viewer")
    registrar = registrar_factory(login_max_failures=3)
    with registrar.console_client() as client:
        for _ in range(3):
            assert login(client, "ada", "guess").status_code == 401
        blocked = login(client, "ada")  # the right password, but too late
        assert blocked.status_code == 429
        assert "too many failed logins for this user from your address" in blocked.text
        assert "try again in 4 min" in blocked.text or "try again in 5 min" in blocked.text
        assert "rbr_session" not in client.cookies
        assert login(client, "bob").status_code == 303  # another account is not locked out


def test_the_rate_limit_holds_for_padded_names_and_logins_sent_side_by_side(
    registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    add_user(mysql_engine, "ada", "viewer")
    registrar = registrar_factory(login_max_failures=3)
    with registrar.console_client() as client:
        form = client.get("/console/login")
        token, cookie = csrf_token(form.text), form.cookies[LOGIN_CSRF_COOKIE]
        url = f"{client.base_url}/console/login"

        def guess(_: int) -> int:
            # Each guess on its own connection, with the one form's token and cookie.
            data = {"username": "ada", "password": "guess", "csrf_token": token}
            return httpx.post(url, data=data, cookies={LOGIN_CSRF_COOKIE: cookie}).status_code

        # Ten guesses at once: recorded before any password is checked, so three at most pass.
        with ThreadPoolExecutor(max_workers=10) as pool:
            answers = list(pool.map(guess, range(10)))
        assert answers.count(401) <= 3
        assert answers.count(429) >= 7
        # "ada " finds "ada" under MariaDB's padding collation: such names are no account's.
        for padded in ("ada ", "ada  ", " ada"):
            assert login(client, padded).status_code == 401
        assert login(client, "ada").status_code == 429
        assert "rbr_session" not in client.cookies


def test_a_csrf_token_that_is_not_ascii_is_refused_not_a_server_error(
    registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    add_user(mysql_engine, "ada", "operator")
    registrar = registrar_factory()
    with registrar.console_client() as client:
        client.get("/console/login")
        data = {"username": "ada", "password": PASSWORD, "csrf_token": "é"}
        assert client.post("/console/login", data=data).status_code == 403
        logged_in(client, "ada")
        refused = client.post(
            "/api/v1/alerts/x/resolve", headers={"X-CSRF-Token": "é".encode("latin-1")}
        )
        assert refused.status_code == 403
        assert "CSRF" in refused.text


def test_a_separate_console_listener_keeps_the_public_port_to_registration(
    registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    registrar = registrar_factory(console_port=0)
    assert registrar.console_url != registrar.url
    operator = {"Authorization": f"Bearer {TEST_OPERATOR_KEY}"}
    with registrar.client() as public:
        registration = public.post(
            "/register_bucket",
            json={
                "name": "rustbucket-split000",
                "ip_address": "127.0.0.1",
                "operating_system": "linux",
                "token": "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
            },
        )
        assert registration.is_success, registration.text
        assert public.get("/healthz").status_code == 200
        assert public.get("/console/login").status_code == 404
        assert public.get("/").status_code == 404
        assert public.get("/api/v1/buckets", headers=operator).status_code == 404
    with registrar.console_client() as internal:
        assert internal.get("/console/login").status_code == 200
        listed = internal.get("/api/v1/buckets", headers=operator)
        assert listed.status_code == 200
        assert listed.json()["total"] == 1
        assert internal.post("/register_bucket", json={}).status_code in (404, 405)
        assert internal.get("/healthz").status_code == 200


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/elsewhere"])
def test_login_never_redirects_off_the_console(
    registrar_factory: RegistrarFactory, mysql_engine: Engine, target: str
) -> None:
    add_user(mysql_engine, "ada", "viewer")
    registrar = registrar_factory()
    with registrar.console_client() as client:
        form = client.get("/console/login")
        answer = client.post(
            "/console/login",
            data={
                "username": "ada",
                "password": PASSWORD,
                "csrf_token": csrf_token(form.text),
                "next": target,
            },
        )
        assert answer.headers["location"] == "/console/"
