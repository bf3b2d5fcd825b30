"""The registrar end to end on the real broker and MariaDB: register, update, operate."""

from __future__ import annotations

import concurrent.futures
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from rbr_runtime.db.tables import buckets, outbox
from rbr_runtime.kafka import EventProducer
from rbr_runtime.secrets import TokenVault
from rbr_runtime.settings import CommonSettings
from rbr_schemas import (
    ALERTS,
    BUCKET_REGISTERED,
    BUCKET_STATUS,
    AlertState,
    BucketState,
    BucketStatus,
    BucketUpdate,
    PollErrorClass,
)
from rbr_testing.broker import Broker
from rbr_testing.kafka import committed_offsets, read_events, read_topic
from rbr_testing.registry import TEST_SECRET_KEY, RegistrarFactory
from rbr_testing.waiting import wait_for

TOKEN = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
vault = TokenVault.from_setting(TEST_SECRET_KEY)


def seed_payload(name: str = "rustbucket-a1B2c3D4", **extra: Any) -> dict[str, Any]:
    """What the real honeypot posts: the metrics absent."""
    return {
        "name": name,
        "ip_address": "127.0.0.1",
        "operating_system": "linux (x86_64)",
        "token": TOKEN,
        **extra,
    }


def registered(broker: Broker, name: str, at_least: int) -> list[Any]:
    events = read_events(broker.bootstrap, BUCKET_REGISTERED, at_least=at_least)
    return [e for e in events if e.subject == name]


def test_registration_is_published_with_the_token_encrypted(
    broker: Broker, registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    registrar = registrar_factory(enrollment_keys="key-one,key-two")
    with registrar.client() as client:
        answer = client.post(
            "/api/v1/register_bucket/", json=seed_payload(registration_key="key-two")
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "registered"

    with mysql_engine.connect() as connection:
        row = connection.execute(select(buckets)).one()
    assert row.state == "active"
    assert row.id == answer.json()["id"]
    assert TOKEN not in row.token_ciphertext
    assert vault.matches(TOKEN, row.token_hash)

    messages = read_topic(broker.bootstrap, BUCKET_REGISTERED.name, at_least=1)
    assert TOKEN.encode() not in messages[0].value()
    event = registered(broker, "rustbucket-a1B2c3D4", 1)[0]
    assert messages[0].key() == b"rustbucket-a1B2c3D4"
    assert vault.decrypt(event.data.token_ciphertext) == TOKEN
    assert (event.data.state, event.data.version, event.data.bucket_id) == (
        BucketState.ACTIVE,
        1,
        row.id,
    )
    wait_for(lambda: _outbox_rows(mysql_engine) == 0, message="outbox emptied after publishing")


def _outbox_rows(engine: Engine) -> int:
    with engine.connect() as connection:
        return len(connection.execute(select(outbox.c.id)).all())


def test_pending_bucket_is_approved_disabled_and_removed_by_an_operator(
    broker: Broker, registrar_factory: RegistrarFactory
) -> None:
    registrar = registrar_factory()
    name = "rustbucket-pend1ng0"
    with registrar.client() as client, registrar.operator() as operator:
        first = client.post("/register_bucket", json=seed_payload(name))
        assert first.json()["status"] == "pending"
        again = client.post("/register_bucket", json=seed_payload(name))
        assert again.json() == first.json()

        listed = operator.get("/api/v1/buckets", params={"state": "pending"}).json()
        assert [b["name"] for b in listed["buckets"]] == [name]
        assert listed["total"] == 1
        assert "token" not in str(listed)

        approved = operator.post(f"/api/v1/buckets/{name}/approve")
        assert approved.json()["state"] == "active"
        assert approved.json()["version"] == 2
        assert operator.post(f"/api/v1/buckets/{name}/approve").json()["status"] == "unchanged"
        assert client.post("/register_bucket", json=seed_payload(name)).json()["status"] == (
            "updated"
        )

        disabled = operator.post(f"/api/v1/buckets/{name}/disable")
        assert disabled.json()["state"] == "disabled"
        refused = client.post("/register_bucket", json=seed_payload(name))
        assert refused.status_code == 403
        assert "disabled by an operator" in refused.json()["detail"]

        removed = operator.delete(f"/api/v1/buckets/{name}")
        assert removed.json()["status"] == "removed"
        assert operator.get(f"/api/v1/buckets/{name}").status_code == 404
        assert operator.delete(f"/api/v1/buckets/{name}").status_code == 404

    messages = read_topic(broker.bootstrap, BUCKET_REGISTERED.name, at_least=4)
    mine = [m for m in messages if m.key() == name.encode()]
    assert mine[-1].value() is None, "removal publishes a tombstone"
    versions = [e.data.version for e in registered(broker, name, 3)]
    states = [e.data.state for e in registered(broker, name, 3)]
    assert versions == [1, 2, 3]
    assert states == [BucketState.PENDING, BucketState.ACTIVE, BucketState.DISABLED]
    closing = [e.data for e in read_events(broker.bootstrap, ALERTS, at_least=1)]
    assert [(a.dedupe_key, a.state) for a in closing] == [
        (f"bucket_unresponsive:{name}", AlertState.RESOLVED)
    ], "removal resolves any unresponsive alert left open"


def test_bucket_updates_its_own_s3_source_and_metrics_with_its_token(
    broker: Broker, registrar_factory: RegistrarFactory
) -> None:
    registrar = registrar_factory()
    name = "rustbucket-s3upd4te"
    path = f"/api/v1/buckets/{name}/self"
    with registrar.client() as client, registrar.operator() as operator:
        client.post("/register_bucket", json=seed_payload(name, cpu_usage="3%"))
        body = {"s3_bucket_name": "honeypot-logs", "s3_prefix": "rb/", "cpu_usage": "9%"}
        assert client.patch(path, json=body).status_code == 401
        wrong = client.patch(path, json=body, headers={"Authorization": "Token " + "z" * 32})
        assert wrong.status_code == 403
        assert "z" * 32 not in wrong.text
        auth = {"Authorization": f"Token {TOKEN}"}
        updated = client.patch(path, json=body, headers=auth)
        assert updated.status_code == 200, updated.text
        assert updated.json()["version"] == 2
        view = operator.get(f"/api/v1/buckets/{name}").json()
        assert view["s3"] == {
            "bucket_name": "honeypot-logs",
            "region": "us-east-1",
            "prefix": "rb/",
        }
        assert view["metrics"]["cpu_usage"] == "9%"
        cleared = client.patch(path, json={"s3_bucket_name": None}, headers=auth)
        assert cleared.json()["version"] == 3

    events = registered(broker, name, 3)
    assert [e.data.s3.bucket_name if e.data.s3 else None for e in events] == [
        None,
        "honeypot-logs",
        None,
    ]


def test_a_pinned_certificate_is_stored_published_and_replaced_by_its_bucket(
    broker: Broker, registrar_factory: RegistrarFactory
) -> None:
    registrar = registrar_factory()
    name = "agent-pinned01"
    pin = "9F:86:D0:81" + ":AB" * 28  # as openssl prints it: colons, upper case
    stored = pin.replace(":", "").lower()
    new_pin = "c" * 64
    with registrar.client() as client, registrar.operator() as operator:
        first = client.post(
            "/register_bucket", json=seed_payload(name, port=8443, tls_cert_sha256=pin)
        )
        assert first.status_code == 200, first.text
        again = client.post(
            "/register_bucket", json=seed_payload(name, port=8443, tls_cert_sha256=stored)
        )
        assert again.json()["status"] == "pending"  # unchanged: nothing re-published
        assert operator.get(f"/api/v1/buckets/{name}").json()["tls_cert_sha256"] == stored
        # The agent made itself a new certificate: its re-registration replaces the pin.
        client.post("/register_bucket", json=seed_payload(name, port=8443, tls_cert_sha256=new_pin))
        assert operator.get(f"/api/v1/buckets/{name}").json()["tls_cert_sha256"] == new_pin
        # Someone else cannot: another token is a conflict, and the pin stays.
        hijack = client.post(
            "/register_bucket",
            json=seed_payload(name, token="Q" * 32, port=8443, tls_cert_sha256="d" * 64),
        )
        assert hijack.status_code == 409
        assert operator.get(f"/api/v1/buckets/{name}").json()["tls_cert_sha256"] == new_pin

    events = registered(broker, name, 2)
    assert [e.data.tls_cert_sha256 for e in events] == [stored, new_pin]
    assert [e.data.version for e in events] == [1, 2]


def test_statuses_keep_last_seen_and_an_older_status_never_wins(
    broker: Broker, registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    registrar = registrar_factory()
    name = "rustbucket-st4tus00"
    with registrar.client() as client:
        bucket_id = client.post("/register_bucket", json=seed_payload(name)).json()["id"]
    settings = CommonSettings(kafka_bootstrap=broker.bootstrap)
    producer = EventProducer(settings, source="/rbr/test")
    base = datetime.now(UTC).replace(microsecond=0)

    def status(
        offset: int, reachable: bool, cpu: str | None = None, bucket: str = name
    ) -> BucketStatus:
        return BucketStatus(
            bucket_id=bucket_id,
            name=bucket,
            polled_at=base + timedelta(seconds=offset),
            reachable=reachable,
            latency_ms=12.5 if reachable else None,
            error_class=None if reachable else PollErrorClass.TIMEOUT,
            updates=BucketUpdate(cpu_usage=cpu) if cpu else None,
        )

    producer.send(BUCKET_STATUS, name, status(10, True, "42%"))
    producer.send(BUCKET_STATUS, name, status(20, False))
    producer.send(BUCKET_STATUS, name, status(5, True, "1%"))  # late and older: ignored
    unknown = "rustbucket-unknown0"
    producer.send(BUCKET_STATUS, unknown, status(30, True, bucket=unknown))  # ignored
    producer.send(BUCKET_STATUS, name, status(6, True, "2%"))  # late and older: ignored

    def row() -> Any:
        with mysql_engine.connect() as connection:
            return connection.execute(select(buckets).where(buckets.c.name == name)).one()

    wait_for(
        lambda: (
            sum(committed_offsets(broker.bootstrap, "registrar", BUCKET_STATUS.name).values()) == 5
        ),
        message="every status handled and committed",
    )
    current = row()
    assert current.last_seen == base + timedelta(seconds=10)
    assert current.last_reachable is False
    assert current.last_error_class == "timeout"
    assert current.cpu_usage == "42%"
    with registrar.operator() as operator:
        view = operator.get(f"/api/v1/buckets/{name}").json()
    assert view["last_seen"].startswith(
        (base + timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%S")
    )
    assert view["metrics"]["cpu_usage"] == "42%"


@pytest.mark.parametrize("count", [60])
def test_concurrent_registrations_are_each_acknowledged_once_committed(
    broker: Broker, registrar_factory: RegistrarFactory, mysql_engine: Engine, count: int
) -> None:
    registrar = registrar_factory(registration_batch_max=16)
    names = [f"rustbucket-conc{i:04d}" for i in range(count)]
    with registrar.client() as client, concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda n: client.post("/register_bucket", json=seed_payload(n)), names)
        )
        # The same registrations again, concurrently: idempotent.
        again = list(
            pool.map(lambda n: client.post("/register_bucket", json=seed_payload(n)), names)
        )
    assert {a.status_code for a in answers + again} == {200}
    with mysql_engine.connect() as connection:
        assert len(connection.execute(select(buckets.c.id)).all()) == count
    events = read_events(broker.bootstrap, BUCKET_REGISTERED, at_least=count)
    assert sorted(e.subject for e in events) == sorted(names)


def test_a_status_of_a_removed_bucket_does_not_touch_its_namesake(
    broker: Broker, registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    registrar = registrar_factory()
    name = "rustbucket-n4mesake"
    with registrar.client() as client, registrar.operator() as operator:
        old_id = client.post("/register_bucket", json=seed_payload(name)).json()["id"]
        assert operator.delete(f"/api/v1/buckets/{name}").status_code == 200
        new_id = client.post("/register_bucket", json=seed_payload(name)).json()["id"]
    assert new_id != old_id
    producer = EventProducer(CommonSettings(kafka_bootstrap=broker.bootstrap), source="/rbr/t")
    base = datetime.now(UTC).replace(microsecond=0)

    def status(bucket_id: str, offset: int, cpu: str) -> BucketStatus:
        return BucketStatus(
            bucket_id=bucket_id,
            name=name,
            polled_at=base + timedelta(seconds=offset),
            reachable=True,
            latency_ms=3.0,
            updates=BucketUpdate(cpu_usage=cpu),
        )

    # A poll of the removed bucket, late (it was in flight), and newer than the new one's.
    producer.send(BUCKET_STATUS, name, status(new_id, 10, "10%"))
    producer.send(BUCKET_STATUS, name, status(old_id, 20, "99%"))
    wait_for(
        lambda: (
            sum(committed_offsets(broker.bootstrap, "registrar", BUCKET_STATUS.name).values()) == 2
        ),
        message="both statuses handled and committed",
    )
    with mysql_engine.connect() as connection:
        row = connection.execute(select(buckets).where(buckets.c.name == name)).one()
    assert row.id == new_id
    assert row.last_seen == base + timedelta(seconds=10)
    assert row.last_status_at == base + timedelta(seconds=10)
    assert row.cpu_usage == "10%"


def test_tokens_stored_under_a_rotated_out_key_are_accepted_and_stored_again(
    broker: Broker, registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    name, other = "rustbucket-r0tate00", "rustbucket-r0tate01"
    before = registrar_factory(secret_key="old-key")
    with before.client() as client:
        for bucket in (name, other):
            answer = client.post("/register_bucket", json=seed_payload(bucket))
            assert answer.json()["status"] == "pending", answer.text
    before.handle.stop()

    rotated = registrar_factory(secret_key="new-key,old-key")
    new_only = TokenVault.from_setting("new-key")
    with rotated.client() as client:
        again = client.post("/register_bucket", json=seed_payload(name))
        assert again.status_code == 200, again.text
        auth = {"Authorization": f"Token {TOKEN}"}
        own = client.patch(f"/api/v1/buckets/{other}/self", json={"cpu_usage": "5%"}, headers=auth)
        assert own.status_code == 200, own.text
        hijack = client.post("/register_bucket", json=seed_payload(name, token="q" * 32))
        assert hijack.status_code == 409

    with mysql_engine.connect() as connection:
        rows = {r.name: r for r in connection.execute(select(buckets))}
    for bucket in (name, other):
        assert rows[bucket].token_hash == new_only.fingerprint(TOKEN), bucket
        assert new_only.decrypt(rows[bucket].token_ciphertext) == TOKEN, bucket
        assert rows[bucket].version == 2, bucket

    # The new ciphertext is published, so pollers keep working once the old key is dropped.
    def republished() -> dict[str, Any] | None:
        latest = {e.subject: e.data for e in read_events(broker.bootstrap, BUCKET_REGISTERED)}
        versions = {bucket: latest[bucket].version for bucket in (name, other) if bucket in latest}
        return latest if versions == {name: 2, other: 2} else None

    latest = wait_for(republished, message="the re-encrypted registrations published")
    for bucket in (name, other):
        assert new_only.decrypt(latest[bucket].token_ciphertext) == TOKEN, bucket
