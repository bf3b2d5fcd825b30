"""`rbr notify test` and the cleanup task, through the real `rbr` command and its entry points."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from rbr_cli.main import app
from rbr_notifier.main import cleanup_task
from rbr_notifier.settings import NotifierSettings
from rbr_notifier.store import NotifierStore
from rbr_notifier.store.alerts import AlertEvent
from rbr_runtime.db.tables import notifications, task_runs
from rbr_schemas import Alert
from rbr_testing.http_receiver import HttpReceiver, Reply

runner = CliRunner()


@pytest.fixture
def configured(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mysql_engine: Engine,
    mysql_database_url: str,
    http_receiver_factory: Callable[..., HttpReceiver],
) -> dict[str, HttpReceiver]:
    hook = http_receiver_factory()
    pagerduty = http_receiver_factory(Reply(202, b'{"status":"success"}'))
    broken = http_receiver_factory(Reply(503, b"down"))
    path = tmp_path / "channels.yaml"
    path.write_text(
        f"""
channels:
  - name: ops
    type: webhook
    url: {hook.url}/hook/${{HOOK_TOKEN}}
    secret: ${{HOOK_SECRET}}
    filters: {{min_severity: high}}
  - name: pd
    type: pagerduty
    routing_key: ${{PD_KEY}}
    base_url: {pagerduty.url}
    throttle: false
  - name: broken
    type: webhook
    url: {broken.url}/x
    enabled: false
"""
    )
    monkeypatch.setenv("RBR_NOTIFIER_CHANNELS", str(path))
    monkeypatch.setenv("RBR_DATABASE_URL", mysql_database_url)
    monkeypatch.setenv("HOOK_TOKEN", "tok-SECRET-1")
    monkeypatch.setenv("HOOK_SECRET", "hmac-SECRET-2")
    monkeypatch.setenv("PD_KEY", "pd-SECRET-3")
    return {"ops": hook, "pd": pagerduty, "broken": broken}


def rbr(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_list_shows_channels_without_secrets(configured: dict[str, HttpReceiver]) -> None:
    result = rbr("notify", "test", "--list")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "ENABLED", "FILTERS", "THROTTLE", "TARGET"]
    assert "ops" in lines[1]
    assert ">=high" in lines[1]
    assert "(signed)" in lines[1]
    assert "pd" in lines[2]
    assert "/v2/enqueue" in lines[2]
    assert "off" in lines[2]
    assert "broken" in lines[3]
    assert " no " in lines[3]
    assert "SECRET" not in result.output


def test_test_sends_through_the_real_channel_code_and_records_it(
    configured: dict[str, HttpReceiver], mysql_engine: Engine
) -> None:
    result = rbr("notify", "test", "--channel", "ops", "--channel", "pd")

    assert result.exit_code == 0, result.output
    assert "ok  ops (webhook) delivered" in result.output
    assert "ok  pd (pagerduty) delivered" in result.output
    (hook_request,) = configured["ops"].requests
    assert hook_request.path == "/hook/tok-SECRET-1"
    assert hook_request.json()["kind"] == "test"
    assert [r.json()["event_action"] for r in configured["pd"].requests] == ["trigger", "resolve"]
    with mysql_engine.connect() as connection:
        recorded = connection.execute(select(notifications.c.channel, notifications.c.kind)).all()
    assert sorted(recorded) == [("ops", "test"), ("pd", "test")]


def test_test_reports_a_failing_channel_and_exits_1(configured: dict[str, HttpReceiver]) -> None:
    result = rbr("notify", "test", "--channel", "broken", "--channel", "ops")

    assert result.exit_code == 1
    assert "FAILED  broken (webhook) HTTP 503: down" in result.output
    assert "ok  ops (webhook)" in result.output


def test_test_all_covers_enabled_channels(configured: dict[str, HttpReceiver]) -> None:
    result = rbr("notify", "test", "--all")
    assert result.exit_code == 0, result.output
    assert configured["broken"].requests == []
    assert len(configured["ops"].requests) == 1


def test_unknown_channel_and_bad_configuration_are_clear_errors(
    configured: dict[str, HttpReceiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    unknown = rbr("notify", "test", "--channel", "nope")
    assert unknown.exit_code == 2
    assert "unknown channel(s) nope; configured: ops, pd, broken" in unknown.output

    monkeypatch.delenv("PD_KEY")
    broken = rbr("notify", "test", "--list")
    assert broken.exit_code == 2
    assert "channel 'pd' (type pagerduty): field 'routing_key'" in broken.output
    assert "PD_KEY" in broken.output


def test_cleanup_task_deletes_only_history_older_than_the_retention(
    configured: dict[str, HttpReceiver],
    mysql_engine: Engine,
    make_alert: Callable[..., Alert],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = NotifierStore(mysql_engine)
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    old_firing = make_alert("k:old", occurred_at=long_ago)
    old_resolved = make_alert("k:old", state="resolved", occurred_at=long_ago)
    open_since_long_ago = make_alert("k:still-open", occurred_at=long_ago)
    recent = make_alert("k:recent", state="resolved", occurred_at=datetime.now(UTC))
    store.alerts.record_events(
        [
            AlertEvent("e1", old_firing),
            AlertEvent("e2", old_resolved),
            AlertEvent("e3", open_since_long_ago),
            AlertEvent("e4", recent),
        ],
        lambda alert: [],
        reopen_after=0,
    )
    monkeypatch.setenv("RBR_NOTIFIER_RETENTION_DAYS", "30")

    result = rbr("run-task", "cleanup_alerts")

    assert result.exit_code == 0, result.output
    assert "deleted 1 resolved alert(s)" in result.output
    assert sorted(row.dedupe_key for row in store.alerts.list_alerts()) == [
        "k:recent",
        "k:still-open",
    ]


def test_daily_cleanup_runs_at_its_time_in_rbr_timezone(mysql_engine: Engine) -> None:
    settings = NotifierSettings(timezone="America/New_York", notifier_cleanup_at="03:30")
    task = cleanup_task(settings, NotifierStore(mysql_engine))

    # 04:00 UTC on the 21st is 23:00 on the 20th in New York: the 20th's 03:30 run is due, the
    # 21st's is not (it would be in UTC).
    assert task.run_if_due(datetime(2026, 11, 21, 4, 0, tzinfo=UTC))
    with mysql_engine.connect() as connection:
        slots = connection.execute(select(task_runs.c.slot)).scalars().all()
    assert slots == ["2026-11-20"]
