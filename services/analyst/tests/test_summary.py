"""The daily summary end to end: real MariaDB in, one `daily_summary` alert on the real broker."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert

from rbr_analyst.settings import AnalystSettings
from rbr_analyst.summary import describe, send_daily_summary
from rbr_runtime.db.tables import alerts, buckets, log_analysis, poller_state
from rbr_runtime.kafka import EventProducer
from rbr_runtime.schedule import DailySlot, DailyTask, TaskClaims
from rbr_schemas import ALERTS, Severity
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events
from rbr_testing.logrows import insert_rows, log_row

NOW = datetime(2026, 11, 22, 7, 30, tzinfo=UTC)  # 08:30 in Paris
ZONE = "Europe/Paris"


def bucket(name: str, state: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "name": name,
        "state": state,
        "ip_address": "192.0.2.1",
        "token_hash": "0" * 64,
        "token_ciphertext": "x",
        "version": 1,
        "registered_at": NOW - timedelta(days=3),
        "updated_at": NOW - timedelta(days=3),
    }


def alert_row(n: int, fired_at: datetime, kind: str, severity: str) -> dict[str, Any]:
    return {
        "alert_id": f"a{n}",
        "dedupe_key": f"{kind}:b{n}",
        "type": kind,
        "severity": severity,
        "state": "firing",
        "title": "t",
        "detail": "",
        "source": "/rbr/test",
        "context": {},
        "fired_at": fired_at,
        "last_event_id": f"e{n}",
        "updated_at": fired_at,
    }


def analysis_row(name: str, hours_ago: float, severity: str, analyser: str) -> dict[str, Any]:
    start = NOW - timedelta(hours=hours_ago + 4)
    return {
        "name": name,
        "ip_address": "192.0.2.1",
        "log_analysis": "x",
        "created_at": NOW - timedelta(hours=hours_ago),
        "window_start": start,
        "window_end": start + timedelta(hours=4),
        "analyser": analyser,
        "severity": severity,
        "findings": [],
        "iocs": [],
        "recommended_actions": [],
        "log_rows": 1,
    }


def seed(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(buckets),
            [
                bucket("b-1", "active"),
                bucket("b-2", "active"),
                bucket("b-3", "active"),
                bucket("b-4", "pending"),
            ],
        )
        connection.execute(
            insert(poller_state),
            [
                {"name": "b-1", "first_seen_at": NOW, "alert_open": True},
                {"name": "b-2", "first_seen_at": NOW, "alert_open": False},
            ],
        )
        connection.execute(
            insert(log_analysis),
            [
                analysis_row("b-1", 2, "high", "claude"),
                analysis_row("b-2", 5, "low", "rules"),
                analysis_row("b-2", 30, "critical", "claude"),  # older than 24 h
            ],
        )
        connection.execute(
            insert(alerts),
            [
                alert_row(1, NOW - timedelta(hours=1), "bucket_unresponsive", "high"),
                alert_row(2, NOW - timedelta(hours=3), "analysis_finding", "high"),
                alert_row(3, NOW - timedelta(hours=23), "analysis_finding", "medium"),
                alert_row(4, NOW - timedelta(hours=25), "analysis_finding", "critical"),
            ],
        )
    insert_rows(
        engine,
        [
            log_row("b-1", NOW - timedelta(hours=2), "login_failed", source_ip="198.51.100.9")
            for _ in range(3)
        ]
        + [log_row("b-2", NOW - timedelta(hours=1), "login_failed", source_ip="198.51.100.8")]
        + [log_row("b-2", NOW - timedelta(hours=30), "login_failed", source_ip="10.9.9.9")],
    )


def test_daily_summary_runs_once_across_replicas_and_reports_the_fleet(
    broker: Broker, mysql_engine: Engine, make_settings: Callable[..., AnalystSettings]
) -> None:
    seed(mysql_engine)
    settings = make_settings(kafka_bootstrap=broker.bootstrap, timezone=ZONE)
    producer = EventProducer(settings, source="/rbr/analyst")

    def replica(owner: str) -> DailyTask:
        return DailyTask.for_slots(
            "daily_summary",
            "08:00",
            lambda slot: describe(send_daily_summary(mysql_engine, producer, slot, NOW)),
            TaskClaims(mysql_engine, owner=owner),
            timezone=ZONE,
        )

    ran = [replica("replica-a").run_if_due(NOW), replica("replica-b").run_if_due(NOW)]

    assert ran == [True, False]
    [event] = read_events(broker.bootstrap, ALERTS, at_least=1)
    summary = event.data
    assert event.source == "/rbr/analyst"
    assert summary.type == "daily_summary"
    assert summary.severity == Severity.INFO
    assert summary.dedupe_key == "daily_summary:2026-11-22"
    assert summary.bucket is None
    context = summary.context
    # The 24 hours before the slot's time (08:00 in Paris), not before the moment it ran.
    assert context["until"] == "2026-11-22T07:00:00+00:00"
    assert context["run"] == "scheduled"
    assert (context["buckets_active"], context["buckets_pending"]) == (3, 1)
    assert context["buckets_unresponsive"] == 1
    assert context["logs_ingested"] == 4
    assert context["buckets_with_logs"] == 2
    assert context["top_attacker_ips"] == "198.51.100.9, 198.51.100.8"
    assert (context["analyses_run"], context["analyses_by_rules"]) == (2, 1)
    assert context["alerts_fired"] == 3
    assert "3 active, 1 pending, 0 disabled, 1 unresponsive" in summary.detail
    assert "198.51.100.9 (3)" in summary.detail
    producer.flush()


def test_summary_of_an_empty_registry_still_reports(
    broker: Broker, mysql_engine: Engine, make_settings: Callable[..., AnalystSettings]
) -> None:
    settings = make_settings(kafka_bootstrap=broker.bootstrap)
    producer = EventProducer(settings, source="/rbr/analyst")
    slot = DailySlot(date(2026, 11, 22), datetime(2026, 11, 22, 7, 0, tzinfo=UTC))
    alert = send_daily_summary(mysql_engine, producer, slot, NOW)
    assert alert.context["logs_ingested"] == 0
    assert "Top attacker IPs: none." in alert.detail
    assert describe(alert).startswith("daily_summary:2026-11-22: 0 active")
    producer.flush()
