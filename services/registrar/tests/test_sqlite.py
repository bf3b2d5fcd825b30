"""The local stack runs on SQLite: registration, operator API and statuses work there too."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from rbr_registrar.main import Registrar
from rbr_registrar.settings import RegistrarSettings
from rbr_registrar.store import status_updates
from rbr_runtime.db.aliases import bucket_named
from rbr_runtime.db.migrate import upgrade
from rbr_runtime.db.tables import outbox
from rbr_schemas import BucketStatus
from rbr_testing.console import add_user, logged_in, seed_bucket
from rbr_testing.operator_rows import put_alerts, put_analyses, put_logs

TOKEN = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"


@pytest.fixture
def registrar(tmp_path: Path) -> Iterator[Registrar]:
    url = f"sqlite:///{tmp_path}/rbr.db"
    upgrade(url)
    settings = RegistrarSettings(
        database_url=url,
        secret_key="local-secret",
        operator_key="local-operator",
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


def test_registration_operator_actions_and_statuses_on_sqlite(registrar: Registrar) -> None:
    client = TestClient(registrar.app)
    operator = {"Authorization": "Bearer local-operator"}
    body = {
        "name": "rustbucket-l0cal000",
        "ip_address": "127.0.0.2",
        "operating_system": "linux",
        "token": TOKEN,
    }
    first = client.post("/register_bucket", json=body)
    assert first.json()["status"] == "pending"
    assert client.post("/register_bucket", json=body).json()["status"] == "pending"
    hijack = client.post("/register_bucket", json={**body, "token": "z" * 32})
    assert hijack.status_code == 409
    approved = client.post("/api/v1/buckets/rustbucket-l0cal000/approve", headers=operator)
    assert approved.json()["state"] == "active"

    polled_at = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    status = BucketStatus(
        bucket_id=first.json()["id"],
        name="rustbucket-l0cal000",
        polled_at=polled_at,
        reachable=True,
        latency_ms=3.0,
    )
    assert registrar.repository.apply_statuses(status_updates([status])) == 1
    assert registrar.repository.apply_statuses(status_updates([status])) == 0
    listed = client.get("/api/v1/buckets", headers=operator).json()
    assert listed["buckets"][0]["last_seen"].startswith("2026-11-21T09:00:00")
    with registrar.engine.connect() as connection:
        assert len(connection.execute(select(outbox.c.id)).all()) == 2
    assert client.get("/healthz").status_code == 200


def test_restarts_are_marked_and_merged_on_sqlite(registrar: Registrar) -> None:
    client = TestClient(registrar.app)
    operator = {"Authorization": "Bearer local-operator"}

    def register(name: str, token: str) -> None:
        body = {
            "name": name,
            "ip_address": "127.0.0.2",
            "operating_system": "linux (x86_64)",
            "token": token,
        }
        assert client.post("/register_bucket", json=body).status_code == 200

    register("rustbucket-first000", TOKEN)
    register("rustbucket-second00", "s" * 32)
    register("rustbucket-third000", "t" * 32)
    listed = client.get("/api/v1/buckets", headers=operator).json()["buckets"]
    assert [b["replaces"] for b in listed] == [None, "rustbucket-first000", "rustbucket-first000"]

    merged = client.post(
        "/api/v1/buckets/rustbucket-third000/merge",
        json={"into": "rustbucket-first000"},
        headers=operator,
    )

    assert merged.json()["status"] == "merged"
    shown = client.get("/api/v1/buckets/rustbucket-first000", headers=operator).json()
    assert shown["aliases"] == ["rustbucket-third000"]
    with registrar.engine.connect() as connection:
        named = bucket_named(connection, "rustbucket-third000")
    assert named is not None
    assert (named.bucket_id, named.name) == (shown["id"], "rustbucket-first000")


def test_the_operator_reads_and_changes_work_on_sqlite(registrar: Registrar) -> None:
    client = TestClient(registrar.app, headers={"Authorization": "Bearer local-operator"})
    for number in range(3):
        body = {
            "name": f"rustbucket-sq{number}",
            "ip_address": f"127.0.0.{number + 2}",
            "operating_system": "linux",
            "token": TOKEN[:-1] + str(number),
        }
        assert client.post("/register_bucket", json=body).json()["status"] == "pending"
    put_logs(registrar.engine)
    put_analyses(registrar.engine)
    put_alerts(registrar.engine)

    bulk = client.post(
        "/api/v1/buckets/bulk", json={"action": "approve", "filter": {"prefix": "rust"}}
    )
    assert bulk.json()["counts"] == {"updated": 3}
    first = client.get("/api/v1/logs", params={"limit": 10, "bucket": "rustbucket-a"}).json()
    rest = client.get(
        "/api/v1/logs",
        params={"limit": 10, "bucket": "rustbucket-a", "cursor": first["next_cursor"]},
    ).json()
    assert len(first["logs"]) + len(rest["logs"]) == 10
    assert rest["next_cursor"] is None
    assert len(client.get("/api/v1/logs", params={"text": "100%"}).json()["logs"]) == 0
    assert client.get("/api/v1/analyses").json()["total"] == 3
    assert client.post("/api/v1/alerts/a1/ack").json()["outcome"] == "acknowledged"
    assert client.get("/api/v1/alerts/a1").json()["state"] == "acknowledged"
    assert {c["channel"] for c in client.get("/api/v1/channels").json()} == {"pager", "slack-ops"}
    assert client.post("/api/v1/channels/pager/test").status_code == 200
    bucket_id = client.get("/api/v1/buckets/rustbucket-sq0").json()["id"]
    polled = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    status = BucketStatus(
        bucket_id=bucket_id, name="rustbucket-sq0", polled_at=polled, reachable=True
    )
    for _ in range(2):  # a replay adds nothing
        registrar.repository.apply_statuses(status_updates([status]), [status])
    history = client.get("/api/v1/buckets/rustbucket-sq0/status-history").json()["statuses"]
    assert [entry["polled_at"][:19] for entry in history] == ["2026-11-21T09:00:00"]
    exported = client.get("/api/v1/audit/export").text.splitlines()
    assert len(exported) == 1 + 3 + 1 + 1  # header, approvals, acknowledgement, test


def test_the_console_on_sqlite(registrar: Registrar) -> None:
    name = "rustbucket-l0cal001"
    client = TestClient(registrar.app, follow_redirects=False)
    body = {"name": name, "ip_address": "127.0.0.3", "operating_system": "linux", "token": TOKEN}
    assert client.post("/register_bucket", json=body).json()["status"] == "pending"
    seed_bucket(registrar.engine, name)
    add_user(registrar.engine, "ada", "operator")
    token = logged_in(client, "ada")
    page = client.get(f"/console/buckets/{name}")
    assert page.status_code == 200
    assert page.text.count('class="chart-bar"') == 48
    assert "Downloader fetched and ran a script" in page.text
    assert client.get("/console/logs", params={"bucket": name, "text": "cowrie"}).status_code == 200
    approved = client.post(
        "/console/buckets/action", data={"csrf_token": token, "action": "approve", "names": [name]}
    )
    assert approved.status_code == 303
    assert "1 active" in client.get("/console/").text.replace("</b><span>", " ")
