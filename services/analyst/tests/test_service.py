"""The whole service on the real broker and MariaDB: logs.parsed in, analyses and alerts out."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, select

from rbr_analyst.main import build_service
from rbr_analyst.settings import AnalystSettings
from rbr_runtime.db.tables import analysis_backlog, log_analysis
from rbr_runtime.kafka import EventProducer
from rbr_schemas import ALERTS, LOGS_PARSED, LogsParsed, utcnow
from rbr_testing.anthropic_api import FakeAnthropic, message_reply
from rbr_testing.broker import Broker
from rbr_testing.kafka import committed_offsets, read_events, read_topic
from rbr_testing.logrows import insert_rows, log_row
from rbr_testing.services import running
from rbr_testing.waiting import wait_for

from .conftest import WINDOW_START

BUCKET = "rustbucket-a"
ANSWER = {
    "summary": "A login succeeded after password guessing.",
    "severity": "high",
    "findings": [
        {
            "key": "successful_login",
            "title": "Root login with a guessed password",
            "severity": "high",
            "description": "198.51.100.2 logged in as root.",
            "evidence": ["root/root from 198.51.100.2"],
        }
    ],
    "iocs": [{"type": "ip", "value": "198.51.100.2"}],
    "recommended_actions": ["Rotate any real root password equal to 'root'."],
}


def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def parsed(object_sha: str, rows: int) -> LogsParsed:
    return LogsParsed(
        object_id=object_sha[:12],
        name=BUCKET,
        s3_bucket="rbr-raw-logs",
        s3_key=f"raw/{BUCKET}/{object_sha[:12]}.log",
        sha256=object_sha,
        records=rows,
        rows_inserted=rows,
        duplicates_skipped=0,
        unparsed_records=0,
        parsed_at=utcnow(),
    )


def count_rows(engine: Engine, table: Any) -> int:
    with engine.connect() as connection:
        return len(connection.execute(select(table)).all())


def test_service_analyses_ended_windows_and_a_replay_changes_nothing(
    broker: Broker,
    mysql_engine: Engine,
    fake_anthropic: FakeAnthropic,
    claude_settings: Callable[..., AnalystSettings],
) -> None:
    settings = claude_settings(kafka_bootstrap=broker.bootstrap)
    fake_anthropic.responder = lambda _r: message_reply(json.dumps(ANSWER))
    past, current = sha("object-past"), sha("object-current")
    insert_rows(
        mysql_engine,
        [
            log_row(
                BUCKET,
                WINDOW_START + timedelta(minutes=i),
                "login_failed",
                source_ip="198.51.100.2",
                username="root",
                password=f"p{i}",
                source_sha256=past,
            )
            for i in range(5)
        ]
        + [
            log_row(
                BUCKET,
                WINDOW_START + timedelta(minutes=9),
                "login_success",
                source_ip="198.51.100.2",
                username="root",
                password="root",
                source_sha256=past,
            ),
            # Ingested now: its window has not ended, so it is not analysed yet.
            log_row(BUCKET, utcnow(), "login_failed", source_sha256=current),
        ],
    )
    producer = EventProducer(settings, source="/rbr/parser")
    events = [(past, 6), (current, 1)]
    for object_sha, rows in events:
        producer.send(LOGS_PARSED, BUCKET, parsed(object_sha, rows))

    with running(build_service(settings)) as service:
        wait_for(lambda: count_rows(mysql_engine, log_analysis) == 1, message="analysis stored")
        # The finding fired and resolved; no daily summary at a first start.
        alerts = read_events(broker.bootstrap, ALERTS, at_least=2)
        # Replay: the same events again.
        for object_sha, rows in events:
            producer.send(LOGS_PARSED, BUCKET, parsed(object_sha, rows))
        wait_for(
            lambda: (
                sum(committed_offsets(broker.bootstrap, "analyst", LOGS_PARSED.name).values()) == 4
            ),
            message="replayed events consumed",
        )
        assert service.exit_code is None

    with mysql_engine.connect() as connection:
        [row] = connection.execute(select(log_analysis)).all()
        backlog = connection.execute(select(analysis_backlog)).all()
    assert (row.name, row.window_start, row.analyser, row.severity) == (
        BUCKET,
        WINDOW_START,
        "claude",
        "high",
    )
    assert row.log_rows == 6
    assert [entry.window_start > WINDOW_START for entry in backlog] == [True]
    assert len(fake_anthropic.message_requests) == 1
    findings = [
        (a.data.dedupe_key, a.data.state.value) for a in alerts if a.data.type == "analysis_finding"
    ]
    # Fired by the analysis; resolved since the next window (long over) logged nothing.
    assert sorted(findings) == [
        (f"analysis:{BUCKET}:successful_login", "firing"),
        (f"analysis:{BUCKET}:successful_login", "resolved"),
    ]
    assert len(read_topic(broker.bootstrap, ALERTS.name)) == len(alerts), "replay raised nothing"
    assert [a.data.type for a in alerts] == ["analysis_finding"] * 2
    producer.flush()
