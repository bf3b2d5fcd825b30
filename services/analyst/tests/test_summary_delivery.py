"""The daily summary from the analyst to a webhook, through the real notifier.

One summary per local day, built for the slot being run; nothing at a first start; a day
missed while the analyst was down is caught up at start with that day's date and figures;
`rbr run-task daily_summary` delivers a fresh summary every time it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert, select
from typer.testing import CliRunner

from rbr_analyst.main import SOURCE, build_service, summary_task
from rbr_analyst.settings import AnalystSettings
from rbr_cli.main import app
from rbr_notifier.channels import parse_channels
from rbr_notifier.main import build_service as build_notifier
from rbr_notifier.settings import NotifierSettings
from rbr_runtime.db.tables import task_runs
from rbr_runtime.kafka import EventProducer
from rbr_schemas import ALERTS, utcnow
from rbr_testing.broker import Broker
from rbr_testing.http_receiver import HttpReceiver
from rbr_testing.kafka import read_topic
from rbr_testing.logrows import insert_rows, log_row
from rbr_testing.services import running
from rbr_testing.waiting import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.mariadb]

ZONE = "Europe/Paris"


@pytest.fixture
def webhook(
    broker: Broker,
    mysql_database_url: str,
    http_receiver_factory: Callable[..., HttpReceiver],
) -> Iterator[HttpReceiver]:
    """A running notifier that delivers every alert to a webhook receiver."""
    receiver = http_receiver_factory()
    channels = parse_channels(
        {"channels": [{"name": "ops", "type": "webhook", "url": f"{receiver.url}/hook"}]}
    )
    settings = NotifierSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_session_timeout_ms=2000,
        consumer_batch_wait=0.1,
        database_url=mysql_database_url,
        http_port=0,
        retry_initial_backoff=0.05,
        retry_max_backoff=0.2,
    )
    with running(build_notifier(settings, channels=channels)):
        yield receiver


def local_time(moment: datetime) -> str:
    """Returns HH:MM of the moment in the test's zone (a summary time relative to now)."""
    return f"{moment.astimezone(ZoneInfo(ZONE)):%H:%M}"


def local_day(moment: datetime) -> date:
    return moment.astimezone(ZoneInfo(ZONE)).date()


def summaries(receiver: HttpReceiver, count: int) -> list[dict[str, Any]]:
    """Waits for `count` deliveries and returns the alerts they carried."""
    requests = receiver.wait_for_requests(count, timeout=30)
    return [r.json()["alert"] for r in requests]


def runs(engine: Engine) -> list[tuple[str, str | None]]:
    with engine.connect() as connection:
        query = select(task_runs.c.slot, task_runs.c.outcome).where(
            task_runs.c.task == "daily_summary"
        )
        return [(row.slot, row.outcome) for row in connection.execute(query)]


def test_a_first_start_sends_no_summary_and_the_next_day_sends_one(
    broker: Broker,
    webhook: HttpReceiver,
    mysql_engine: Engine,
    make_settings: Callable[..., AnalystSettings],
) -> None:
    now = utcnow().replace(second=0, microsecond=0)
    settings = make_settings(
        kafka_bootstrap=broker.bootstrap,
        timezone=ZONE,
        daily_summary_at=local_time(now - timedelta(hours=1)),
    )

    with running(build_service(settings)):
        wait_for(lambda: runs(mysql_engine), message="the start-up decision recorded")
    assert runs(mysql_engine) == [(local_day(now - timedelta(hours=1)).isoformat(), "skipped")]
    assert read_topic(broker.bootstrap, ALERTS.name) == [], "no summary at a first start"

    # The next day, at its time, the summary goes out as scheduled.
    producer = EventProducer(settings, source=SOURCE)
    tomorrow = now + timedelta(days=1)
    assert summary_task(settings, mysql_engine, producer).run_if_due(tomorrow)
    producer.flush()
    [delivered] = summaries(webhook, 1)
    assert delivered["dedupe_key"] == f"daily_summary:{local_day(tomorrow - timedelta(hours=1))}"
    assert delivered["context"]["run"] == "scheduled"


def test_a_day_missed_while_down_is_caught_up_with_its_own_date_and_figures(
    broker: Broker,
    webhook: HttpReceiver,
    mysql_engine: Engine,
    make_settings: Callable[..., AnalystSettings],
) -> None:
    now = utcnow().replace(second=0, microsecond=0)
    # Today's time is an hour away: the latest slot is yesterday's, due 23 hours ago.
    due = now - timedelta(hours=23)
    yesterday = local_day(due)
    settings = make_settings(
        kafka_bootstrap=broker.bootstrap,
        timezone=ZONE,
        daily_summary_at=local_time(now + timedelta(hours=1)),
    )
    with mysql_engine.begin() as connection:  # the analyst ran days ago, then was down
        connection.execute(
            insert(task_runs).values(
                task="daily_summary",
                slot=(yesterday - timedelta(days=2)).isoformat(),
                claimed_by="replica-before",
                claimed_at=now - timedelta(days=3),
                finished_at=now - timedelta(days=3),
                outcome="ok",
            )
        )
    # Two records in yesterday's 24 hours, three since its time (today's figures).
    insert_rows(
        mysql_engine,
        [log_row("rustbucket-a", due - timedelta(hours=h), "login_failed") for h in (1, 20)]
        + [log_row("rustbucket-a", due + timedelta(hours=h), "login_failed") for h in (1, 2, 3)],
    )

    with running(build_service(settings)):
        [caught_up] = summaries(webhook, 1)

    assert caught_up["dedupe_key"] == f"daily_summary:{yesterday}"
    assert caught_up["title"] == f"Rustbucket fleet daily summary {yesterday}"
    context = caught_up["context"]
    assert context["date"] == yesterday.isoformat()
    assert context["run"] == "catch-up"
    assert datetime.fromisoformat(context["until"]) == due.astimezone(UTC)
    assert context["logs_ingested"] == 2, "yesterday's figures, not the last 24 hours'"
    assert (yesterday.isoformat(), "ok") in runs(mysql_engine)

    # Today's scheduled run comes after it and is delivered too: no day displaces another.
    producer = EventProducer(settings, source=SOURCE)
    later = now + timedelta(hours=1, minutes=1)
    assert summary_task(settings, mysql_engine, producer).run_if_due(later)
    producer.flush()
    scheduled = summaries(webhook, 2)[1]
    assert scheduled["dedupe_key"] == f"daily_summary:{local_day(now + timedelta(hours=1))}"
    assert scheduled["context"]["logs_ingested"] == 3
    assert scheduled["alert_id"] != caught_up["alert_id"]


def test_run_task_daily_summary_delivers_a_fresh_summary_every_time(
    broker: Broker,
    webhook: HttpReceiver,
    mysql_engine: Engine,
    mysql_database_url: str,
    make_settings: Callable[..., AnalystSettings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = utcnow()
    settings = make_settings(
        kafka_bootstrap=broker.bootstrap,
        timezone=ZONE,
        daily_summary_at=local_time(now - timedelta(minutes=5)),
    )
    # Today's scheduled summary went out already.
    producer = EventProducer(settings, source=SOURCE)
    assert summary_task(settings, mysql_engine, producer).run_if_due(now)
    producer.flush()
    [scheduled] = summaries(webhook, 1)

    monkeypatch.setenv("RBR_DATABASE_URL", mysql_database_url)
    monkeypatch.setenv("RBR_KAFKA_BOOTSTRAP", broker.bootstrap)
    monkeypatch.setenv("RBR_TIMEZONE", ZONE)
    runner = CliRunner()
    first = runner.invoke(app, ["run-task", "daily_summary"])
    second = runner.invoke(app, ["run-task", "daily_summary"])

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    delivered = summaries(webhook, 3)
    ids = {alert["alert_id"] for alert in delivered}
    assert len(ids) == 3, "each summary is its own alert"
    by_hand = [a for a in delivered if a["context"]["run"] == "manual"]
    assert len(by_hand) == 2
    assert all(a["dedupe_key"].startswith(f"daily_summary:{local_day(now)}:run-") for a in by_hand)
    assert all(a["title"].endswith("(on request)") for a in by_hand)
    assert scheduled["dedupe_key"] == f"daily_summary:{local_day(now - timedelta(minutes=5))}"
