"""The transactional outbox: acknowledged registrations reach the topic whatever the broker did."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from rbr_registrar.outbox import MysqlNamedLock
from rbr_runtime.db.tables import buckets, registrar_outbox
from rbr_schemas import BUCKET_REGISTERED
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events
from rbr_testing.registry import RegistrarFactory
from rbr_testing.waiting import wait_for

TOKEN = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"


def seed(name: str) -> dict[str, Any]:
    return {"name": name, "ip_address": "127.0.0.1", "operating_system": "linux", "token": TOKEN}


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def test_registrations_acknowledged_while_the_broker_is_down_reach_the_topic(
    broker: Broker, registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    registrar = registrar_factory(kafka_message_timeout_ms=1500)
    before = "rustbucket-before00"
    names = [f"rustbucket-down{i:04d}" for i in range(5)]
    with registrar.client() as client:
        assert client.post("/register_bucket", json=seed(before)).status_code == 200
        read_events(broker.bootstrap, BUCKET_REGISTERED, at_least=1)

        broker.stop()
        answers = [client.post("/register_bucket", json=seed(name)) for name in names]
        assert [a.json()["status"] for a in answers] == ["pending"] * 5
        # Acknowledged means committed: the rows and their outbox entries are in MariaDB.
        assert count(mysql_engine, buckets) == 6
        assert count(mysql_engine, registrar_outbox) == 5
        wait_for(lambda: registrar.registrar.relay.failing_since, message="relay retrying")
        assert registrar.handle.service.health.readiness()[0], "still ready: the DB is up"
        broker.start()  # memory-only broker: an empty topic again

    # The restarted broker lost the first bucket too: the check after the relay recovered
    # publishes it again from the table.
    events = wait_for(
        lambda: (
            (found := read_events(broker.bootstrap, BUCKET_REGISTERED, timeout=30))
            and {e.subject for e in found} == {before, *names}
            and found
        ),
        timeout=30,
        message="every bucket on the topic",
    )
    assert len(events) >= 6
    wait_for(lambda: count(mysql_engine, registrar_outbox) == 0, message="outbox emptied")
    wait_for(lambda: registrar.registrar.relay.failing_since is None, message="relay recovered")


def test_only_one_replica_holds_the_relay_lock(mysql_engine: Engine) -> None:
    first, second = MysqlNamedLock(mysql_engine), MysqlNamedLock(mysql_engine)
    try:
        assert first.held()
        assert first.held(), "held again by the same replica"
        assert not second.held()
        first.release()
        assert second.held()
        assert not first.held()
    finally:
        first.release()
        second.release()
