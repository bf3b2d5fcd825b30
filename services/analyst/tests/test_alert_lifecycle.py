"""Analysis alerts open, continue, resolve and reopen across windows; replays add nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, insert, select

from rbr_analyst.analyst import Analyst
from rbr_analyst.settings import AnalystSettings
from rbr_analyst.store import AnalystStore
from rbr_runtime.db.tables import analysis_backlog, log_analysis
from rbr_runtime.kafka import EventProducer
from rbr_schemas import ALERTS
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events, read_topic
from rbr_testing.logrows import insert_rows, log_row

from .conftest import INTERVAL, WINDOW_START

BUCKET = "rustbucket-a"
KEY = f"analysis:{BUCKET}:successful_login"


def window(n: int) -> Any:
    return WINDOW_START + timedelta(seconds=n * INTERVAL)


def login(n: int) -> dict[str, Any]:
    return log_row(
        BUCKET,
        window(n) + timedelta(minutes=5),
        "login_success",
        source_ip="198.51.100.2",
        username="root",
        password="root",
    )


def failure(n: int) -> dict[str, Any]:
    return log_row(
        BUCKET,
        window(n) + timedelta(minutes=5),
        "login_failed",
        source_ip="198.51.100.3",
        username="admin",
        password="x",
    )


def test_alert_fires_continues_resolves_and_reopens(
    broker: Broker,
    mysql_engine: Engine,
    store: AnalystStore,
    make_settings: Callable[..., AnalystSettings],
) -> None:
    # Windows 0 and 1: logins; 2: failures only; 3: login; 4: nothing at all.
    insert_rows(mysql_engine, [login(0), login(1), failure(2), login(3)])
    settings = make_settings(kafka_bootstrap=broker.bootstrap)
    producer = EventProducer(settings, source="/rbr/analyst")
    now = window(8)
    analyst = Analyst(settings, store, producer, None, clock=lambda: now)
    for n in range(4):
        store.note_windows(BUCKET, "192.0.2.10", [window(n)], INTERVAL, now)

    cycles = [analyst.run_cycle() for _ in range(5)]

    assert [c.analysed for c in cycles] == [1, 1, 1, 1, 0]
    events = [e.data for e in read_events(broker.bootstrap, ALERTS, at_least=5)]
    assert all(e.dedupe_key == KEY for e in events)
    states = [(e.state.value, e.occurred_at) for e in events]
    assert states == [
        ("firing", window(1)),  # window 0 ended
        ("firing", window(2)),  # still happening in window 1
        ("resolved", window(3)),  # window 2 had no login
        ("firing", window(4)),  # window 3: a new occurrence
        ("resolved", window(5)),  # window 4 logged nothing at all
    ]
    first, again, resolved, reopened, quiet = events
    assert first.alert_id == again.alert_id == resolved.alert_id
    assert reopened.alert_id == quiet.alert_id != first.alert_id
    assert first.severity.value == "high"
    assert "198.51.100.2 logged in as 'root'" in first.detail

    # Replay: the windows are noted again (a replay of logs.parsed) or re-queued by a lagging
    # replica; nothing is stored or sent twice.
    noted, analysed = store.note_windows(
        BUCKET, "192.0.2.10", [window(n) for n in range(4)], INTERVAL, now
    )
    assert (noted, len(analysed)) == (0, 4)
    with mysql_engine.begin() as connection:
        connection.execute(
            insert(analysis_backlog).values(
                name=BUCKET,
                window_start=window(1),
                ip_address="192.0.2.10",
                first_noted_at=now,
                attempts=0,
            )
        )
    replayed = analyst.run_cycle()
    assert (replayed.analysed, replayed.skipped) == (0, 1)
    with mysql_engine.connect() as connection:
        assert len(connection.execute(select(log_analysis)).all()) == 4
        assert connection.execute(select(analysis_backlog)).all() == []
    assert len(read_topic(broker.bootstrap, ALERTS.name)) == 5
    producer.flush()
