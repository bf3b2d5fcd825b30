"""The transactional outbox: acknowledged registrations reach the topic whatever the broker did."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, select

from rbr_runtime.db.tables import buckets, outbox
from rbr_runtime.outbox import MysqlNamedLock
from rbr_schemas import BUCKET_REGISTERED
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events
from rbr_testing.registry import RegistrarFactory, RunningRegistrar
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
        assert count(mysql_engine, outbox) == 5
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
    wait_for(lambda: count(mysql_engine, outbox) == 0, message="outbox emptied")
    wait_for(lambda: registrar.registrar.relay.failing_since is None, message="relay recovered")


def scrape(registrar: RunningRegistrar, name: str, **labels: str) -> float | None:
    """Returns a metric's value from the registrar's /metrics, as Prometheus reads it."""
    with registrar.client() as client:
        text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def test_while_the_broker_is_frozen_the_outbox_gauges_count_the_rows_piling_up(
    broker: Broker, registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    # The default produce timeout: the relay stays blocked in a send for the whole freeze.
    registrar = registrar_factory(dependency_check_interval=1.0, dependency_check_timeout=2.0)
    names = [f"rustbucket-froz{i:04d}" for i in range(6)]
    with registrar.client() as client:
        assert client.post("/register_bucket", json=seed(names[0])).status_code == 200
        read_events(broker.bootstrap, BUCKET_REGISTERED, at_least=1)
        wait_for(
            lambda: scrape(registrar, "rbr_outbox_backlog", service="registrar") == 0,
            message="outbox empty",
        )

        broker.freeze()
        try:
            for name in names[1:]:
                answer = client.post("/register_bucket", json=seed(name))
                assert answer.json()["status"] == "pending"
            wait_for(
                lambda: scrape(registrar, "rbr_outbox_backlog", service="registrar") == 5,
                timeout=10.0,
                message="rbr_outbox_backlog counting the 5 rows the relay could not send",
            )
            wait_for(
                lambda: (
                    (scrape(registrar, "rbr_outbox_oldest_seconds", service="registrar") or 0) >= 2
                ),
                timeout=10.0,
                message="rbr_outbox_oldest_seconds growing",
            )
            # Registrations are still taken: the broker shows as degraded, /readyz stays 200.
            readyz = wait_for(
                lambda: (answer := client.get("/readyz")).json()["status"] == "degraded" and answer,
                timeout=10.0,
                message="/readyz naming the broker",
            )
            assert readyz.status_code == 200
            assert "broker" in readyz.json()["degraded"]
            assert scrape(registrar, "rbr_dependency_up", dependency="broker") == 0
        finally:
            broker.thaw()

        events = read_events(broker.bootstrap, BUCKET_REGISTERED, at_least=6, timeout=60)
        assert sorted({e.subject for e in events}) == names
        wait_for(
            lambda: scrape(registrar, "rbr_outbox_backlog", service="registrar") == 0,
            message="outbox emptied",
        )
        wait_for(lambda: client.get("/readyz").json()["status"] == "ready", timeout=30.0)
    assert count(mysql_engine, outbox) == 0


def test_only_one_replica_holds_the_relay_lock(mysql_engine: Engine) -> None:
    first = MysqlNamedLock(mysql_engine, "registrar")
    second = MysqlNamedLock(mysql_engine, "registrar")
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
