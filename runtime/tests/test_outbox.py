"""The one outbox: each service's messages published in order by one replica, others' left."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

import pytest
from sqlalchemy import Engine, func, select

from rbr_runtime.db.tables import outbox
from rbr_runtime.kafka import EventProducer
from rbr_runtime.kafka.codec import CONTENT_TYPE, CONTENT_TYPE_HEADER
from rbr_runtime.outbox import MysqlNamedLock, Outbox, OutboxMessage, OutboxRelay, lock_name
from rbr_runtime.settings import CommonSettings
from rbr_schemas import ALERTS, BUCKET_REGISTERED, utcnow
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_topic
from rbr_testing.waiting import wait_for

REGISTRAR = Outbox("registrar")
ANALYST = Outbox("analyst")


@pytest.fixture
def producers(broker: Broker) -> Iterator[Callable[[], EventProducer]]:
    """Makes producers on the test broker (as a relay does), flushed after the test."""
    made: list[EventProducer] = []

    def make() -> EventProducer:
        made.append(EventProducer(CommonSettings(kafka_bootstrap=broker.bootstrap), "/rbr/t"))
        return made[-1]

    yield make
    for producer in made:
        producer.flush(5.0)


def add(engine: Engine, box: Outbox, messages: Sequence[OutboxMessage]) -> None:
    with engine.begin() as connection:
        box.add(connection, messages, utcnow())


def waiting(engine: Engine, service: str) -> int:
    with engine.connect() as connection:
        query = select(func.count()).select_from(outbox).where(outbox.c.service == service)
        return int(connection.execute(query).scalar_one())


def test_a_relay_publishes_its_services_messages_in_order_and_leaves_the_others(
    broker: Broker, mysql_engine: Engine, producers: Callable[[], EventProducer]
) -> None:
    for n in range(5):
        add(mysql_engine, ANALYST, [OutboxMessage(ALERTS.name, "alert-1", b"%d" % n)])
        add(mysql_engine, REGISTRAR, [OutboxMessage(BUCKET_REGISTERED.name, f"rb-{n}", None)])
    relay = OutboxRelay(mysql_engine, ANALYST, producers, batch_size=2)

    assert relay.publish_pending() == 5  # in three batches

    alerts = read_topic(broker.bootstrap, ALERTS.name, at_least=5)
    assert [m.value() for m in alerts] == [b"0", b"1", b"2", b"3", b"4"]
    assert all(m.headers() == [(CONTENT_TYPE_HEADER, CONTENT_TYPE)] for m in alerts)
    assert (waiting(mysql_engine, "analyst"), waiting(mysql_engine, "registrar")) == (0, 5)
    with mysql_engine.connect() as connection:
        keys = REGISTRAR.waiting_keys(connection, BUCKET_REGISTERED.name, ["rb-0", "rb-9"])
    assert keys == {"rb-0"}

    assert OutboxRelay(mysql_engine, REGISTRAR, producers).publish_pending() == 5
    tombstones = read_topic(broker.bootstrap, BUCKET_REGISTERED.name, at_least=5)
    assert sorted((m.key(), m.value()) for m in tombstones) == [
        (f"rb-{n}".encode(), None) for n in range(5)
    ]
    assert waiting(mysql_engine, "registrar") == 0


def test_one_replica_relays_a_service_and_a_one_off_pass_gives_the_role_back(
    broker: Broker, mysql_engine: Engine, producers: Callable[[], EventProducer]
) -> None:
    one_off = OutboxRelay(mysql_engine, ANALYST, producers)
    running = OutboxRelay(mysql_engine, ANALYST, producers, scan_interval=0.1)
    add(mysql_engine, ANALYST, [OutboxMessage(ALERTS.name, "alert-1", b"first")])

    # A one-off pass (`rbr run-task analyze_logs`) publishes, then holds no lock.
    assert one_off.publish_pending() == 1
    assert not one_off.leading.is_set()
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    try:
        wait_for(running.leading.is_set, message="the running replica took the relay role")
        add(mysql_engine, ANALYST, [OutboxMessage(ALERTS.name, "alert-1", b"second")])
        assert one_off.publish_pending() == 0, "another replica relays: it publishes"
        wait_for(lambda: waiting(mysql_engine, "analyst") == 0, message="relayed")
        other_service = MysqlNamedLock(mysql_engine, "registrar")
        assert other_service.held(), "each service has a relay lock of its own"
        other_service.release()
    finally:
        running.stop()
        thread.join(10)

    assert not running.leading.is_set()
    values = [m.value() for m in read_topic(broker.bootstrap, ALERTS.name, at_least=2)]
    assert values == [b"first", b"second"], "each message published once, in order"


def test_lock_names_fit_mysql_and_differ_per_service_and_database() -> None:
    names = {
        lock_name(service, database)
        for service in ("registrar", "analyst")
        for database in ("rbr", "rbr_test_" + "x" * 60, "rbr_test_" + "y" * 60)
    }
    assert len(names) == 6
    assert max(len(name) for name in names) <= 64
