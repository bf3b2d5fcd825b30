"""Alert events decided while the broker is away wait in the outbox; the relay sends them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import Engine, func, select

from rbr_analyst.analyst import Analyst
from rbr_analyst.settings import AnalystSettings
from rbr_analyst.store import AnalystStore
from rbr_runtime.db.tables import outbox
from rbr_runtime.kafka import EventProducer
from rbr_schemas import ALERTS
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events
from rbr_testing.logrows import insert_rows, log_row
from rbr_testing.waiting import wait_for

from .conftest import INTERVAL, NOW, WINDOW_START

BUCKET = "rustbucket-a"


def waiting(engine: Engine) -> int:
    """Alert events waiting in the analyst's outbox (iocs events wait beside them)."""
    with engine.connect() as connection:
        query = (
            select(func.count())
            .select_from(outbox)
            .where(outbox.c.service == "analyst", outbox.c.topic == "alerts")
        )
        return int(connection.execute(query).scalar_one())


def test_alerts_decided_while_the_broker_is_down_are_sent_when_it_is_back(
    broker: Broker,
    mysql_engine: Engine,
    store: AnalystStore,
    make_settings: Callable[..., AnalystSettings],
) -> None:
    at = WINDOW_START + timedelta(minutes=5)
    insert_rows(
        mysql_engine,
        [log_row(BUCKET, at, "login_success", source_ip="198.51.100.2", username="root")],
    )
    settings = make_settings(kafka_bootstrap=broker.bootstrap, kafka_message_timeout_ms=1500)
    producer = EventProducer(settings, source="/rbr/analyst")
    analyst = Analyst(settings, store, producer, None, clock=lambda: NOW)
    store.note_windows(BUCKET, "192.0.2.10", [WINDOW_START], INTERVAL, NOW)
    broker.stop()

    summary = analyst.run_cycle()

    # The analysis is stored all the same; its alert waits for the broker.
    assert (summary.analysed, summary.alert_events, summary.published) == (1, 1, 0)
    assert analyst.relay.failing_since is not None
    assert waiting(mysql_engine) == 1
    relay = threading.Thread(target=analyst.relay.run, daemon=True)
    relay.start()
    try:
        broker.start()  # no new cycle: the relay publishes what waits
        [event] = read_events(broker.bootstrap, ALERTS, at_least=1, timeout=60)
        assert event.data.dedupe_key == f"analysis:{BUCKET}:successful_login"
        wait_for(lambda: waiting(mysql_engine) == 0, message="outbox emptied")
    finally:
        analyst.relay.stop()
        relay.join(10)
    producer.flush()
