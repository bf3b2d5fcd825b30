"""`rbr run-task analyze_logs|analyze_now|daily_summary`, through their entry points."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from rbr_analyst.store import AnalystStore
from rbr_cli.plugins import load_task
from rbr_runtime.db.tables import analysis_backlog, log_analysis
from rbr_schemas import ALERTS, utcnow
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events
from rbr_testing.logrows import insert_rows, log_row

from .conftest import INTERVAL, WINDOW_START


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, broker: Broker, mysql_database_url: str) -> None:
    for name in ("ANTHROPIC_API_KEY", "RBR_ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RBR_DATABASE_URL", mysql_database_url)
    monkeypatch.setenv("RBR_KAFKA_BOOTSTRAP", broker.bootstrap)
    monkeypatch.setenv("RBR_ANALYSIS_GRACE", "0")
    # The alert lifecycle by kind of attack (test_intel.py covers grading by novelty).
    monkeypatch.setenv("RBR_ALERT_GRADING", "kind")


@pytest.mark.usefixtures("environment")
def test_analyze_logs_task_analyses_every_ended_window(
    broker: Broker, mysql_engine: Engine, store: AnalystStore
) -> None:
    windows = [WINDOW_START, WINDOW_START + timedelta(seconds=INTERVAL)]
    rows = [
        log_row(name, start + timedelta(minutes=1), "login_success", source_ip="198.51.100.2")
        for name in ("rustbucket-a", "rustbucket-b")
        for start in windows
    ]
    rows.append(log_row("rustbucket-a", utcnow(), "login_failed"))
    insert_rows(mysql_engine, rows)
    for name in ("rustbucket-a", "rustbucket-b"):
        store.note_windows(name, "192.0.2.10", [*windows, utcnow()], INTERVAL, utcnow())

    summary = load_task("analyze_logs")()

    assert summary.startswith("4 window(s) analysed (4 by rules)")
    assert "4 alert event(s) queued" in summary
    assert "2 pending" in summary  # the current windows, not ended yet
    with mysql_engine.connect() as connection:
        stored = connection.execute(select(log_analysis.c.name, log_analysis.c.analyser)).all()
        pending = connection.execute(select(analysis_backlog)).all()
    assert sorted(stored) == [("rustbucket-a", "rules")] * 2 + [("rustbucket-b", "rules")] * 2
    assert len(pending) == 2
    fired = read_events(broker.bootstrap, ALERTS, at_least=2)
    assert {e.data.dedupe_key for e in fired if e.data.state.value == "firing"} == {
        "analysis:rustbucket-a:successful_login",
        "analysis:rustbucket-b:successful_login",
    }


@pytest.mark.usefixtures("environment")
def test_analyze_now_shows_the_current_window_at_once_and_changes_nothing(
    mysql_engine: Engine, store: AnalystStore, capsys: pytest.CaptureFixture[str]
) -> None:
    now = utcnow()
    insert_rows(
        mysql_engine,
        [log_row("rustbucket-a", now, "login_success", source_ip="198.51.100.2")],
    )
    store.note_windows("rustbucket-a", "192.0.2.10", [now], INTERVAL, now)

    summary = load_task("analyze_now")()

    assert summary == "1 window(s) previewed; nothing stored, no alert sent"
    printed = capsys.readouterr().out
    assert printed.startswith("rustbucket-a (window from ")
    assert "so far): " in printed
    assert "by rules" in printed
    assert "successful" in printed.lower()  # the rules' finding on a successful login
    with mysql_engine.connect() as connection:
        assert connection.execute(select(log_analysis)).all() == []
        assert len(connection.execute(select(analysis_backlog)).all()) == 1  # still due later


@pytest.mark.usefixtures("environment", "mysql_engine")
def test_daily_summary_task_publishes_the_summary(broker: Broker) -> None:
    line = load_task("daily_summary")()
    assert line.startswith(f"daily_summary:{utcnow().date().isoformat()}")
    [event] = read_events(broker.bootstrap, ALERTS, at_least=1)
    assert event.data.type == "daily_summary"
