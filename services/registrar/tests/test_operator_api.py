"""The operator API on MariaDB: every read's paging and filters, bulk changes, alerts, audit.

The registrar is built whole (no broker needed: changes wait in the outbox) and called
through FastAPI's test client; rows of the other services' tables are inserted as they
would write them (`operator_rows.py`).
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Producer
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from rbr_registrar.main import Registrar
from rbr_registrar.operator.audit import record_audit
from rbr_registrar.operator.auth import Actor, Role, current_actor
from rbr_registrar.settings import RegistrarSettings
from rbr_registrar.store import status_updates
from rbr_runtime.db.tables import alerts, audit_log, outbox
from rbr_runtime.kafka.codec import decode
from rbr_schemas import ALERTS, BUCKET_STATUS, TOPICS, BucketStatus
from rbr_testing.broker import Broker
from rbr_testing.operator_rows import HOSTILE, T0, put_alerts, put_analyses, put_logs
from rbr_testing.registry import RegistrarFactory, database_url

OPERATOR = {"Authorization": "Bearer the-operator-key"}
TOKEN = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
NAMES = ["alpha-1", "alpha-2", "alpha-3", "beta-1", "beta-2"]


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
    yield built
    built.committer.stop()
    thread.join(10)
    built.engine.dispose()


@pytest.fixture
def client(registrar: Registrar) -> TestClient:
    """A client with the operator key, five pending buckets registered."""
    api = TestClient(registrar.app, headers=OPERATOR)
    for number, name in enumerate(NAMES):
        body = {
            "name": name,
            "ip_address": f"127.0.0.{number + 2}",
            "operating_system": "linux",
            "token": TOKEN[:-2] + f"{number:02d}",
        }
        assert api.post("/register_bucket", json=body).json()["status"] == "pending"
    return api


def pages(client: TestClient, path: str, key: str, **params: Any) -> list[list[Any]]:
    """Returns every page of a cursor-paged list."""
    found: list[list[Any]] = []
    cursor = None
    while True:
        answer = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        found.append(body[key])
        cursor = body["next_cursor"]
        if cursor is None:
            return found


def minutes(stamp: str) -> int:
    """Returns how many minutes after T0 an ISO time is."""
    return int((datetime.fromisoformat(stamp) - T0).total_seconds() // 60)


def field_error(answer: Any, field: str) -> str:
    assert answer.status_code == 422, answer.text
    messages = {error["field"]: error["message"] for error in answer.json()["errors"]}
    assert field in messages, answer.json()
    return messages[field]


def audit_entries(engine: Engine) -> list[tuple[str, str | None, str, str]]:
    c = audit_log.c
    with engine.connect() as connection:
        rows = connection.execute(select(c.action, c.target, c.outcome, c.actor).order_by(c.id))
        return [tuple(row) for row in rows]  # type: ignore[misc]


# -- buckets ----------------------------------------------------------------------------------


def test_buckets_are_listed_by_state_mode_and_name_prefix_page_by_page(
    mysql_engine: Engine, client: TestClient
) -> None:
    client.post("/api/v1/buckets/alpha-1/approve")
    client.put("/api/v1/buckets/alpha-2/delivery-mode", json={"mode": "s3-drop"})

    def names(**params: Any) -> list[str]:
        body = client.get("/api/v1/buckets", params=params).json()
        return [bucket["name"] for bucket in body["buckets"]]

    assert names(prefix="alpha") == ["alpha-1", "alpha-2", "alpha-3"]
    assert names(state="active") == ["alpha-1"]
    assert names(mode="s3-drop") == ["alpha-2"]
    assert names(state="pending", prefix="alpha") == ["alpha-2", "alpha-3"]
    assert names(prefix="gamma") == []
    first = client.get("/api/v1/buckets", params={"limit": 2}).json()
    assert [b["name"] for b in first["buckets"]] == ["alpha-1", "alpha-2"]
    assert first["total"] == 5
    rest = client.get("/api/v1/buckets", params={"limit": 3, "after": first["next_after"]})
    assert [b["name"] for b in rest.json()["buckets"]] == ["alpha-3", "beta-1", "beta-2"]
    assert "letters, digits" in field_error(
        client.get("/api/v1/buckets", params={"prefix": "a%"}), "prefix"
    )
    assert "must be one of" in field_error(
        client.get("/api/v1/buckets", params={"mode": "carrier-pigeon"}), "mode"
    )
    assert audit_entries(mysql_engine) == [
        ("bucket.approve", "alpha-1", "updated", "operator-key"),
        ("bucket.delivery_mode", "alpha-2", "updated", "operator-key"),
    ]


def test_status_history_keeps_every_poll_once_newest_first(
    registrar: Registrar, client: TestClient
) -> None:
    bucket = client.get("/api/v1/buckets/alpha-1").json()
    statuses = [
        BucketStatus(
            bucket_id=bucket["id"],
            name="alpha-1",
            polled_at=T0 + timedelta(minutes=5 * n),
            reachable=n != 2,
            error_class="timeout" if n == 2 else None,
            latency_ms=10.0 + n,
        )
        for n in range(5)
    ]
    stranger = BucketStatus(
        bucket_id="00000000-0000-0000-0000-000000000000",
        name="gone",
        polled_at=T0,
        reachable=True,
    )
    for _ in range(2):  # a replay adds nothing
        registrar.repository.apply_statuses(status_updates(statuses), [*statuses, stranger])

    path = "/api/v1/buckets/alpha-1/status-history"
    found = pages(client, path, "statuses", limit=2)
    assert [len(page) for page in found] == [2, 2, 1]
    entries = [entry for page in found for entry in page]
    assert [e["latency_ms"] for e in entries] == [14.0, 13.0, 12.0, 11.0, 10.0]
    assert entries[2]["reachable"] is False
    assert entries[2]["error_class"] == "timeout"
    recent = client.get(path, params={"since": (T0 + timedelta(minutes=10)).isoformat()})
    assert len(recent.json()["statuses"]) == 3
    assert client.get("/api/v1/buckets/gone/status-history").json()["statuses"] == []
    assert "next_cursor" in field_error(client.get(path, params={"cursor": "nonsense"}), "cursor")

    assert registrar.repository.purge_status_history(T0 + timedelta(minutes=10), batch=1) == 2
    assert len(client.get(path).json()["statuses"]) == 3


# -- logs -------------------------------------------------------------------------------------


def test_logs_are_searched_by_every_filter_and_paged_newest_first(
    mysql_engine: Engine, client: TestClient
) -> None:
    put_logs(mysql_engine)

    def numbers(**params: Any) -> list[int]:
        answer = client.get("/api/v1/logs", params={"limit": 100, **params})
        assert answer.status_code == 200, answer.text
        return [minutes(entry["created_at"]) for entry in answer.json()["logs"]]

    every = [entry for page in pages(client, "/api/v1/logs", "logs", limit=4) for entry in page]
    assert len(every) == 15
    assert [e["created_at"] for e in every] == sorted(
        (e["created_at"] for e in every), reverse=True
    )
    assert numbers(bucket="rustbucket-b") == [14, 13, 12, 11, 10]
    assert numbers(event_type="command") == [3]
    stored = {"since": "2026-11-01T00:00:00Z"}  # text searches cover 24 hours unless given
    assert numbers(command="bot.sh") == []  # T0 is older than 24 hours
    assert numbers(command="WGET", **stored) == []  # substrings, case as stored
    assert numbers(command="bot.sh", **stored) == [3]
    assert numbers(username="admin") == [14, 13, 12, 11, 10]
    assert numbers(source_ip="2001:0db8::0001") == [4]  # addresses compared in canonical form
    hostile = client.get("/api/v1/logs", params={"source_ip": "2001:db8::1"}).json()["logs"]
    assert hostile[0]["log"] == f"hostile {HOSTILE}"  # returned as data, whole
    assert numbers(text="record 1", **stored) == [14, 13, 12, 11, 10, 1]
    assert numbers(text="100%", **stored) == []  # % is a character, not a wildcard
    window = {"since": (T0 + timedelta(minutes=2)).isoformat(), "until": "2026-11-20T12:05:00"}
    assert numbers(**window) == [4, 3, 2]
    assert numbers(bucket="rustbucket-a", username="root", **window) == [4, 2]

    assert "later than since" in field_error(
        client.get("/api/v1/logs", params={"since": "2026-11-21T00:00Z", "until": "2026-11-20"}),
        "until",
    )
    assert "IPv4 or IPv6" in field_error(
        client.get("/api/v1/logs", params={"source_ip": "not-an-ip"}), "source_ip"
    )
    assert "next_cursor" in field_error(
        client.get("/api/v1/logs", params={"cursor": "2026-11-20T12:00:00~x"}), "cursor"
    )
    assert "at most 1000" in field_error(
        client.get("/api/v1/logs", params={"limit": 5000}), "limit"
    )


# -- analyses ---------------------------------------------------------------------------------


def test_analyses_are_listed_by_bucket_severity_and_window_and_shown_whole(
    mysql_engine: Engine, client: TestClient
) -> None:
    put_analyses(mysql_engine)
    listed = client.get("/api/v1/analyses").json()
    assert listed["total"] == 3
    assert [a["bucket"] for a in listed["analyses"]] == [
        "rustbucket-b",
        "rustbucket-a",
        "rustbucket-a",
    ]
    assert listed["analyses"][1]["findings"] == 1
    assert listed["analyses"][1]["iocs"] == 1
    high_a = client.get("/api/v1/analyses", params={"bucket": "rustbucket-a", "severity": "high"})
    assert high_a.json()["total"] == 1
    later = client.get("/api/v1/analyses", params={"since": (T0 + timedelta(hours=1)).isoformat()})
    assert later.json()["total"] == 2
    paged = pages(client, "/api/v1/analyses", "analyses", limit=2)
    assert [len(page) for page in paged] == [2, 1]

    shown = client.get(f"/api/v1/analyses/{listed['analyses'][1]['id']}").json()
    assert shown["analysis"] == f"Analysis of rustbucket-a: {HOSTILE}"
    assert shown["findings"] == [{"title": "Downloader"}]
    assert shown["iocs"] == [{"type": "ip", "value": "x"}]
    assert shown["recommended_actions"] == ["Block 198.51.100.1"]
    assert client.get("/api/v1/analyses/999999").status_code == 404
    assert "must be one of" in field_error(
        client.get("/api/v1/analyses", params={"severity": "apocalyptic"}), "severity"
    )


# -- alerts -----------------------------------------------------------------------------------


def test_alerts_are_listed_by_filter_and_shown_with_text_history_and_deliveries(
    mysql_engine: Engine, client: TestClient
) -> None:
    put_alerts(mysql_engine)

    def ids(**params: Any) -> list[str]:
        return [a["alert_id"] for a in client.get("/api/v1/alerts", params=params).json()["alerts"]]

    assert ids() == ["a3", "a2", "a1"]
    assert ids(state="firing") == ["a3", "a1"]
    assert ids(bucket="rustbucket-b") == ["a3"]
    assert ids(severity="low") == ["a2"]
    assert ids(type="analysis_finding") == ["a3"]
    assert ids(since=T0.isoformat()) == ["a3", "a1"]
    assert [len(p) for p in pages(client, "/api/v1/alerts", "alerts", limit=2)] == [2, 1]
    assert "must be one of" in field_error(
        client.get("/api/v1/alerts", params={"state": "snoozed"}), "state"
    )

    shown = client.get("/api/v1/alerts/a1").json()
    assert shown["detail"] == "The whole text of a1: no answer for 15 minutes."
    assert [event["event"] for event in shown["history"]] == ["fired", "repeated"]
    assert {(d["channel"], d["state"]) for d in shown["deliveries"]} == {
        ("slack-ops", "sent"),
        ("pager", "failed"),
    }
    assert [a["attempt"] for a in shown["attempts"]] == [1, 2, 3]
    assert client.get("/api/v1/alerts/nope").status_code == 404


def test_an_acknowledged_alert_shows_as_such_and_a_resolve_goes_to_the_notifier(
    mysql_engine: Engine, client: TestClient
) -> None:
    put_alerts(mysql_engine)
    acked = client.post("/api/v1/alerts/a1/ack")
    assert acked.json() == {"alert_id": "a1", "outcome": "acknowledged"}
    assert client.post("/api/v1/alerts/a1/ack").json()["outcome"] == "unchanged"
    shown = client.get("/api/v1/alerts/a1").json()
    assert shown["state"] == "acknowledged"
    assert shown["acknowledged_by"] == "operator-key"
    assert [e["event"] for e in shown["history"]][-1] == "acknowledged"
    assert [
        a["alert_id"] for a in client.get("/api/v1/alerts?state=acknowledged").json()["alerts"]
    ] == ["a1"]
    assert client.post("/api/v1/alerts/a2/ack").status_code == 409
    assert client.post("/api/v1/alerts/nope/ack").status_code == 404

    resolved = client.post("/api/v1/alerts/a1/resolve")
    assert resolved.json()["outcome"] == "queued"
    assert client.post("/api/v1/alerts/a2/resolve").status_code == 409
    with mysql_engine.connect() as connection:
        queued = connection.execute(
            select(outbox.c.message_key, outbox.c.value).where(outbox.c.topic == ALERTS.name)
        ).all()
        state = connection.execute(select(alerts.c.state).where(alerts.c.alert_id == "a1"))
        assert state.scalar_one() == "acknowledged"  # until the notifier applies the resolve
    assert [key for key, _ in queued] == ["bucket_unresponsive:a1"]
    event = decode(ALERTS, queued[0][1])
    assert event.data.state == "resolved"
    assert event.data.alert_id == "a1"
    assert audit_entries(mysql_engine) == [
        ("alert.acknowledge", "a1", "acknowledged", "operator-key"),
        ("alert.acknowledge", "a1", "unchanged", "operator-key"),
        ("alert.resolve", "a1", "queued", "operator-key"),
    ]


def test_a_channel_test_is_an_alert_addressed_to_that_channel_only(
    mysql_engine: Engine, client: TestClient
) -> None:
    answer = client.post("/api/v1/channels/slack-ops/test")
    assert answer.status_code == 200, answer.text
    alert_id = answer.json()["alert_id"]
    with mysql_engine.connect() as connection:
        (value,) = connection.execute(
            select(outbox.c.value).where(outbox.c.topic == ALERTS.name)
        ).one()
    test = decode(ALERTS, value).data
    assert (test.alert_id, test.type, test.context["channel"]) == (alert_id, "test", "slack-ops")
    assert ("channel.test", "slack-ops", "queued", "operator-key") in audit_entries(mysql_engine)
    assert "channel's name" in field_error(
        client.post("/api/v1/channels/bad name!/test"), "channel"
    )


def test_channels_are_listed_from_their_deliveries(
    mysql_engine: Engine, client: TestClient
) -> None:
    put_alerts(mysql_engine)
    listed = {c["channel"]: c for c in client.get("/api/v1/channels").json()}
    assert set(listed) == {"pager", "slack-ops"}
    assert listed["pager"]["last_state"] == "failed"


# -- bulk changes and the audit log -------------------------------------------------------------


def test_buckets_are_approved_disabled_merged_and_removed_many_at_a_time(
    mysql_engine: Engine, client: TestClient
) -> None:
    bulk = "/api/v1/buckets/bulk"
    approved = client.post(bulk, json={"action": "approve", "names": ["alpha-1", "nope"]})
    assert approved.json()["counts"] == {"updated": 1, "not_found": 1}
    by_filter = client.post(
        bulk, json={"action": "approve", "filter": {"state": "pending", "prefix": "alpha"}}
    ).json()
    assert [(o["name"], o["outcome"], o["state"]) for o in by_filter["outcomes"]] == [
        ("alpha-2", "updated", "active"),
        ("alpha-3", "updated", "active"),
    ]
    disabled = client.post(bulk, json={"action": "disable", "filter": {"prefix": "alpha"}})
    assert disabled.json()["counts"] == {"updated": 3}
    merged = client.post(bulk, json={"action": "merge", "names": ["beta-2"], "into": "beta-1"})
    assert merged.json()["outcomes"][0]["outcome"] == "merged"
    into_itself = client.post(bulk, json={"action": "merge", "names": ["beta-1"], "into": "beta-1"})
    assert into_itself.json()["outcomes"][0]["outcome"] == "refused"
    removed = client.post(bulk, json={"action": "remove", "names": ["alpha-1", "alpha-1"]})
    assert removed.json()["outcomes"] == [
        {"name": "alpha-1", "outcome": "removed", "state": None, "detail": None}
    ]
    states = {b["name"]: b["state"] for b in client.get("/api/v1/buckets").json()["buckets"]}
    assert states == {"alpha-2": "disabled", "alpha-3": "disabled", "beta-1": "pending"}

    assert "one of them" in field_error(
        client.post(bulk, json={"action": "approve", "names": ["a"], "filter": {}}), "names"
    )
    assert "must select by state" in field_error(
        client.post(bulk, json={"action": "remove", "filter": {"prefix": ""}}), "filter"
    )
    assert "is required to merge" in field_error(
        client.post(bulk, json={"action": "merge", "names": ["a"]}), "into"
    )
    assert "must be one of" in field_error(
        client.post(bulk, json={"action": "explode", "names": ["a"]}), "action"
    )
    entries = audit_entries(mysql_engine)
    assert ("bucket.approve", "nope", "not_found", "operator-key") in entries
    assert ("bucket.disable", "alpha-3", "updated", "operator-key") in entries
    assert ("bucket.merge", "beta-2", "merged", "operator-key") in entries
    assert entries.count(("bucket.remove", "alpha-1", "removed", "operator-key")) == 1


def test_the_audit_log_is_read_by_filter_page_by_page_and_exported(
    mysql_engine: Engine, client: TestClient
) -> None:
    for name in NAMES:
        client.post(f"/api/v1/buckets/{name}/approve")
    client.post("/api/v1/buckets/beta-1/disable")
    client.delete("/api/v1/buckets/beta-2")
    client.post("/api/v1/buckets/alpha-1/merge", json={"into": "alpha-1"})

    every = [e for page in pages(client, "/api/v1/audit", "entries", limit=3) for e in page]
    assert [e["action"] for e in every][:3] == ["bucket.merge", "bucket.remove", "bucket.disable"]
    assert len(every) == 8
    assert every[0]["outcome"] == "refused_422"
    approvals = client.get("/api/v1/audit", params={"action": "bucket.approve"}).json()
    assert len(approvals["entries"]) == 5
    assert client.get("/api/v1/audit", params={"actor": "somebody"}).json()["entries"] == []
    future = client.get("/api/v1/audit", params={"since": "2100-01-01T00:00:00Z"})
    assert future.json()["entries"] == []

    exported = client.get("/api/v1/audit/export", params={"format": "csv"})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 8
    assert rows[0]["action"] == "bucket.merge"
    assert json.loads(rows[0]["detail"]) == {"into": "alpha-1"}
    record_audit(mysql_engine, Actor("=cmd|calc", Role.OPERATOR), "alert.acknowledge", "@x", "ok")
    hostile = next(iter(csv.DictReader(io.StringIO(client.get("/api/v1/audit/export").text))))
    assert (hostile["actor"], hostile["target"]) == ("'=cmd|calc", "'@x")
    lines = client.get("/api/v1/audit/export", params={"format": "json"}).text.splitlines()
    assert [json.loads(line)["action"] for line in lines].count("bucket.approve") == 5
    assert json.loads(lines[0])["actor"] == "=cmd|calc"  # JSON keeps the value as it is


# -- roles ------------------------------------------------------------------------------------


WRITES = {"POST", "PUT", "DELETE", "PATCH"}
NOT_OPERATOR_ROUTES = ("/register_bucket", "/api/v1/register_bucket", "/api/v1/buckets/{name}/self")


def test_a_viewer_reads_but_is_refused_on_every_write_endpoint(
    registrar: Registrar, client: TestClient
) -> None:
    app = registrar.app
    app.dependency_overrides[current_actor] = lambda: Actor("vera", Role.VIEWER)
    try:
        writes = [
            (method.upper(), path)
            for path, operations in app.openapi()["paths"].items()
            for method in operations
            if method.upper() in WRITES and not path.startswith(NOT_OPERATOR_ROUTES)
        ]
        assert len(writes) >= 14
        for method, path in writes:
            concrete = path.replace("{name}", "alpha-1").replace("{alert_id}", "a1")
            concrete = concrete.replace("{channel}", "slack").replace("{source}", "s")
            answer = client.request(method, concrete, json={})
            assert answer.status_code == 403, (method, path, answer.text)
            assert "vera is a viewer" in answer.json()["detail"]
        assert client.get("/api/v1/buckets").status_code == 200
        assert client.get("/api/v1/audit/export").status_code == 403
    finally:
        app.dependency_overrides.clear()
    states = {b["name"]: b["state"] for b in client.get("/api/v1/buckets").json()["buckets"]}
    assert set(states.values()) == {"pending"}


def test_an_operator_may_change_but_only_an_admin_exports_the_audit_log(
    registrar: Registrar, client: TestClient
) -> None:
    registrar.app.dependency_overrides[current_actor] = lambda: Actor("otto", Role.OPERATOR)
    try:
        assert client.post("/api/v1/buckets/alpha-1/approve").status_code == 200
        assert client.get("/api/v1/audit").json()["entries"][0]["actor"] == "otto"
        refused = client.get("/api/v1/audit/export")
        assert refused.status_code == 403
        assert "needs the admin role" in refused.json()["detail"]
    finally:
        registrar.app.dependency_overrides.clear()
    assert (
        client.get("/api/v1/buckets", headers={"Authorization": "Bearer wrong"}).status_code == 403
    )


# -- topics -----------------------------------------------------------------------------------


def test_topics_show_every_topic_with_its_consumers_lag_and_dlq_depth(
    registrar_factory: RegistrarFactory, broker: Broker
) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for number in range(3):
        producer.produce(BUCKET_STATUS.dlq, key=b"x", value=f"poison {number}".encode())
    assert producer.flush(10) == 0
    registrar = registrar_factory()
    with registrar.operator() as client:
        answer = client.get("/api/v1/topics", timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["errors"] == []
    topics = {topic["topic"]: topic for topic in body["topics"]}
    assert set(topics) == {spec.name for spec in TOPICS}
    assert topics[BUCKET_STATUS.name]["dlq_depth"] == 3
    assert topics[ALERTS.name]["dlq_depth"] == 0
