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
