"""The console's web plumbing: templates, sessions from cookies, CSRF, login and logout.

Pages need a session (else they redirect to the login page); every POST also needs the
session's CSRF token, as the `csrf_token` form field or the `X-CSRF-Token` header (htmx sends
the header). Responses under /console carry a strict Content-Security-Policy: the only script
is the vendored htmx, and nothing is loaded from elsewhere.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote

import jinja2
from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rbr_registrar.client_address import UnknownClientAddress, client_address
from rbr_registrar.console import text
from rbr_registrar.console.accounts import USER_NAME_PATTERN, Accounts
from rbr_registrar.console.sessions import ConsoleSession, LoginLimit, Sessions
from rbr_registrar.merges import BucketMerges
from rbr_registrar.operator.audit import record_audit
from rbr_registrar.operator.auth import Actor, Role
from rbr_registrar.operator.topics import TopicsReader
from rbr_registrar.settings import RegistrarSettings
from rbr_registrar.store import BucketRepository

log = logging.getLogger(__name__)

PREFIX = "/console"
WRONG_LOGIN = "wrong user name or password (or the account is disabled)"
SESSION_COOKIE = "rbr_session"
LOGIN_CSRF_COOKIE = "rbr_login_csrf"
FLASH_COOKIE = "rbr_flash"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
HTMX_VERSION = "2.0.11"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class LoginForm(BaseModel):
    """What the login form posts."""

    username: str = Field(default="", max_length=64)
    password: str = Field(default="", max_length=1024)
    csrf_token: str = Field(default="", max_length=128)
    next: str = Field(default=f"{PREFIX}/", max_length=2048)


class LoginRequired(Exception):
    """A page was asked for without a live session."""


class Refused(Exception):
    """A console request refused with a status and a message for the operator."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ConsoleParts:
    """What the console's routes work with."""

    settings: RegistrarSettings
    engine: Engine
    store: BucketRepository
    merges: BucketMerges
    on_commit: Callable[[], None]
    """Wakes the outbox relay after a change queued messages."""
    accounts: Accounts
    sessions: Sessions
    login_limit: LoginLimit
    templates: Jinja2Templates
    topics: TopicsReader
    """Lag and DLQ depth, read at most every 10 s however often the page is opened."""


def make_templates() -> Jinja2Templates:
    """Returns the console's templates: autoescaped, with the filters for hostile text."""
    directory = Path(str(resources.files("rbr_registrar.console") / "templates"))
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        auto_reload=False,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["clean"] = text.clean
    environment.filters["clip"] = text.clip
    environment.filters["when"] = when
    return Jinja2Templates(env=environment)


def when(value: Any) -> str:
    """Formats a datetime for a table (UTC, to the second); '-' for None."""
    if value is None:
        return "-"
    return f"{value:%Y-%m-%d %H:%M:%S}"


def parts_of(request: Request) -> ConsoleParts:
    """Returns the console parts the application was built with."""
    parts: ConsoleParts = request.app.state.console
    return parts


Parts = Annotated[ConsoleParts, Depends(parts_of)]


def session_of(request: Request) -> ConsoleSession | None:
    """Returns the request's live console session, or None (no cookie, expired, disabled)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or len(cookie) > 128:
        return None
    parts: ConsoleParts | None = getattr(request.app.state, "console", None)
    if parts is None:
        return None
    return parts.sessions.find(cookie)


def page_session(request: Request) -> ConsoleSession:
    """Dependency of every page: the session, else a redirect to the login page."""
    session = session_of(request)
    if session is None:
        raise LoginRequired
    return session


PageSession = Annotated[ConsoleSession, Depends(page_session)]


async def presented_csrf(request: Request) -> str | None:
    """Returns the CSRF token a request carries: the header, else the form field."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return None
    form = await request.form()
    value = form.get(CSRF_FIELD)
    return value if isinstance(value, str) else None


def same_token(presented: str | None, expected: str) -> bool:
    """Tells whether a presented token is the expected one, in constant time.

    Compared as bytes: `compare_digest` raises on a str with non-ASCII characters, which a
    hostile request can send.
    """
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def check_csrf(session: ConsoleSession, presented: str | None) -> None:
    """Raises Refused (403) unless the request carries the session's CSRF token."""
    if not same_token(presented, session.csrf_token):
        raise Refused(
            403,
            "this form has no valid CSRF token: reload the page and try again "
            "(a form from another site, or from before a new login, is refused)",
        )


def check_role(session: ConsoleSession, needed: Role) -> None:
    """Raises Refused (403) unless the session's role includes `needed`."""
    if not Actor(session.user_name, session.role).may(needed):
        raise Refused(
            403, f"{session.user_name} is a {session.role}: this needs the {needed.value} role"
        )


async def operator_session(request: Request, session: PageSession) -> ConsoleSession:
    """Dependency of every change: a session of an operator (or admin) with its CSRF token."""
    check_csrf(session, await presented_csrf(request))
    check_role(session, Role.OPERATOR)
    return session


OperatorSession = Annotated[ConsoleSession, Depends(operator_session)]


def session_actor(request: Request) -> Actor | None:
    """The operator API's view of a console session: its user, or None without a session.

    A change (any method but GET, HEAD, OPTIONS) must carry the session's CSRF token in the
    X-CSRF-Token header, else it is refused: a cookie alone never changes anything.
    """
    session = session_of(request)
    if session is None:
        return None
    if request.method not in SAFE_METHODS:
        presented = request.headers.get(CSRF_HEADER)
        if not same_token(presented, session.csrf_token):
            raise HTTPException(
                403, "a change with a console session needs its CSRF token as X-CSRF-Token"
            )
    return actor_of(session)


def actor_of(session: ConsoleSession) -> Actor:
    """Returns who a session is, for the operator actions and the audit log."""
    return Actor(session.user_name, session.role)


def render(
    request: Request,
    template: str,
    session: ConsoleSession | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Renders a console page with the session (user, role, CSRF token) in its context."""
    parts = parts_of(request)
    flash = request.cookies.get(FLASH_COOKIE)
    values = {
        "session": session,
        "csrf_token": session.csrf_token if session else "",
        "can_change": session is not None and actor_of(session).may(Role.OPERATOR),
        "is_admin": session is not None and actor_of(session).may(Role.ADMIN),
        "path": request.url.path,
        "flash": unquote(flash)[:300] if flash else None,
        **context,
    }
    response: HTMLResponse = parts.templates.TemplateResponse(
        request, template, values, status_code=status_code
    )
    if flash:
        response.delete_cookie(FLASH_COOKIE, path=PREFIX)
    return response


def back_to(request: Request, path: str, message: str | None = None) -> Response:
    """Answers a change with a redirect to the page it came from (303: then a GET).

    The message rides in a short-lived cookie the next page shows once (not in the URL,
    where a crafted link could make the console say anything).
    """
    response = RedirectResponse(safe_next(path), status_code=303)
    if message:
        response.set_cookie(
            FLASH_COOKIE,
            quote(message[:300]),
            max_age=60,
            httponly=True,
            samesite="strict",
            secure=_cookie_secure(request, parts_of(request).settings),
            path=PREFIX,
        )
    return response


def safe_next(value: str | None) -> str:
    """Returns a console path to go to, never another site (`//evil`, `https://...`)."""
    if not value or not value.startswith(f"{PREFIX}/") or value.startswith("//"):
        return f"{PREFIX}/"
    if "\\" in value or any(ord(c) < 32 for c in value):
        return f"{PREFIX}/"
    return value


def _cookie_secure(request: Request, settings: RegistrarSettings) -> bool:
    return settings.console_secure_cookie or request.url.scheme == "https"


def _address(request: Request, settings: RegistrarSettings) -> str:
    peer = request.client.host if request.client else None
    try:
        return client_address(
            peer,
            request.headers.getlist(settings.trusted_proxy_header.value),
            settings.trusted_proxies,
            settings.trusted_proxy_header,
        )
    except UnknownClientAddress:
        return peer or "unknown"


def _login_page(
    request: Request, next_path: str, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        None,
        status_code=status_code,
        login_csrf=token,
        next_path=safe_next(next_path),
        error=error,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_cookie_secure(request, parts_of(request).settings),
        path=f"{PREFIX}/login",
    )
    return response


def auth_routes() -> APIRouter:
    """Login and logout."""
    router = APIRouter(prefix=PREFIX, include_in_schema=False)

    @router.get("/login")
    def login_form(request: Request, next: str = f"{PREFIX}/") -> Response:
        return _login_page(request, next)

    @router.post("/login")
    def login(request: Request, parts: Parts, form: Annotated[LoginForm, Form()]) -> Response:
        username, password, next = form.username, form.password, form.next
        csrf_token = form.csrf_token
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not same_token(csrf_token, expected):
            return _login_page(
                request,
                next,
                "the login form had expired or came from elsewhere: try again",
                status_code=403,
            )
        if not re.fullmatch(USER_NAME_PATTERN, username):
            # No account has such a name; refused before the limiter, whose key would be
            # another per spelling ("ada " finds "ada" under MySQL's padding collations).
            return _login_page(request, next, WRONG_LOGIN, 401)
        address = _address(request, parts.settings)
        wait = parts.login_limit.attempt(username, address)
        if wait is not None:
            log.warning("console login refused: too many failures for a user from %s", address)
            return _login_page(
                request,
                next,
                f"too many failed logins for this user from your address: try again in "
                f"{int(wait) // 60} min {int(wait) % 60} s",
                status_code=429,
            )
        user = parts.accounts.authenticate(username, password)
        if user is None:
            log.info("console login failed from %s", address)
            return _login_page(request, next, WRONG_LOGIN, 401)
        parts.login_limit.clear(username, address)
        old = request.cookies.get(SESSION_COOKIE)
        if old:
            parts.sessions.end(old)
        session_id, _ = parts.sessions.start(user.name, user.role)
        log.info("console login of %s from %s", user.name, address)
        record_audit(
            parts.engine,
            Actor(user.name, user.role),
            "console.login",
            None,
            "ok",
            detail={"from": address},
        )
        response = RedirectResponse(safe_next(next), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            session_id,
            max_age=int(parts.settings.console_session_lifetime),
            httponly=True,
            samesite="lax",
            secure=_cookie_secure(request, parts.settings),
            path="/",
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE, path=f"{PREFIX}/login")
        return response

    @router.post("/logout")
    async def logout(request: Request, session: PageSession) -> Response:
        check_csrf(session, await presented_csrf(request))
        parts = parts_of(request)
        await run_in_threadpool(parts.sessions.end, request.cookies.get(SESSION_COOKIE, ""))
        await run_in_threadpool(
            record_audit, parts.engine, actor_of(session), "console.logout", None, "ok"
        )
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return router


class SecurityHeaders:
    """Adds the console's security headers to every answer under /console."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Passes the request on; adds the headers to the answer's start."""
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(PREFIX):
            await self._app(scope, receive, send)
            return

        # The vendored script and the stylesheet may be cached; pages never are.
        static = str(scope["path"]).startswith(f"{PREFIX}/static/")
        added = [h for h in SECURITY_HEADERS if not (static and h[0] == b"cache-control")]
        names = {name for name, _ in added}

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() not in names
                ]
                message["headers"] = headers + added
            await send(message)

        await self._app(scope, receive, with_headers)


def _login_required(request: Request, _: Exception) -> Response:
    target = request.url.path
    if request.url.query:
        target = f"{target}?{request.url.query}"
    login = f"{PREFIX}/login?next={quote(safe_next(target))}"
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": login})
    return RedirectResponse(login, status_code=303)


def _refused(request: Request, error: Exception) -> Response:
    assert isinstance(error, Refused)
    return render(
        request, "error.html", session_of(request), status_code=error.status, message=error.message
    )


def install(app: FastAPI, parts: ConsoleParts, pages: APIRouter) -> None:
    """Adds the console to an application: `/` redirects to it."""
    app.state.console = parts
    app.state.session_actor = session_actor
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(Refused, _refused)
    static = Path(str(resources.files("rbr_registrar.console") / "static"))
    app.mount(f"{PREFIX}/static", StaticFiles(directory=static), name="console-static")
    app.include_router(auth_routes())
    app.include_router(pages)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)
