"""The operator commands against the real broker and databases."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import select
from typer.testing import CliRunner

from rbr_cli.main import app
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.tables import audit_log
from rbr_runtime.kafka import EventProducer, OutgoingMessage
from rbr_runtime.settings import CommonSettings
from rbr_schemas import ALERTS, Alert, AlertState, DeadLetterHeaders, Severity, utcnow
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_topic

runner = CliRunner()


@pytest.fixture
def env(broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "RBR_KAFKA_BOOTSTRAP": broker.bootstrap,
        "RBR_DATABASE_URL": f"sqlite:///{tmp_path}/rbr.db",
        "RBR_S3_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing listens: S3 unreachable
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def alert(n: int) -> Alert:
    return Alert(
        alert_id=f"a-{n}",
        dedupe_key=f"k-{n}",
        type="test",
        severity=Severity.LOW,
        state=AlertState.FIRING,
        title=f"alert {n}",
        source="/rbr/test",
        occurred_at=datetime(2026, 11, 21, 9, n, tzinfo=UTC),
    )


def dead_letter(n: int, reason: str) -> OutgoingMessage:
    headers = DeadLetterHeaders(
        source_topic="alerts",
        source_partition=0,
        source_offset=n,
        consumer_group="notifier",
        error_class=reason,
        error=f"delivery to channel pager failed: HTTP 503 (#{n})",
        failed_at=utcnow(),
    )
    value = alert(n).model_dump_json().encode()
    return OutgoingMessage(ALERTS.dlq, f"k-{n}", value, [("trace", b"t"), *headers.to_kafka()])


def test_topics_create_is_idempotent_and_list_describe_show_them(env: dict[str, str]) -> None:
    created = runner.invoke(app, ["topics", "create"])
    assert created.exit_code == 0, created.output
    assert "exists" in created.output
    listed = runner.invoke(app, ["topics", "list"])
    assert "logs.extracted.dlq" in listed.output
    described = runner.invoke(app, ["topics", "describe", "logs.extracted"])
    assert "producers: log-extractor" in described.output
    assert "partitions on the broker: 12" in described.output
    missing = runner.invoke(app, ["topics", "describe", "no.such.topic"])
    assert missing.exit_code == 1
    assert "does not exist" in missing.output


def test_db_upgrade_then_current(env: dict[str, str]) -> None:
    upgraded = runner.invoke(app, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    current = runner.invoke(app, ["db", "current"])
    revision = current.output.split("database: ")[1].split(";")[0]
    assert revision != "not migrated"
    assert f"code: {revision}" in current.output


def test_bad_configuration_exits_2_naming_the_variable(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RBR_KAFKA_SESSION_TIMEOUT_MS", "soon")
    result = runner.invoke(app, ["topics", "list"])
    assert result.exit_code == 2
    assert "RBR_KAFKA_SESSION_TIMEOUT_MS is invalid" in result.output


def test_dlq_list_and_replay(env: dict[str, str], broker: Broker) -> None:
    runner.invoke(app, ["db", "upgrade"])
    producer = EventProducer(CommonSettings(kafka_bootstrap=broker.bootstrap), source="/t")
    producer.send_messages([dead_letter(1, "rejected"), dead_letter(2, "undecodable")])

    summary = runner.invoke(app, ["dlq", "list"])
    assert "alerts.dlq" in summary.output
    assert "1 rejected" in summary.output
    listed = runner.invoke(app, ["dlq", "list", "alerts"])
    assert "alerts[0]@1" in listed.output
    assert "HTTP 503 (#2)" in listed.output

    dry = runner.invoke(app, ["dlq", "replay", "alerts", "--dry-run"])
    assert "would replay 2" in dry.output
    assert read_topic(broker.bootstrap, "alerts") == []

    only_rejected = runner.invoke(app, ["dlq", "replay", "alerts.dlq", "--error-class", "rejected"])
    assert only_rejected.exit_code == 0, only_rejected.output
    assert "replayed 1 (1 to alerts); skipped 1" in only_rejected.output
    replayed = read_topic(broker.bootstrap, "alerts", at_least=1)
    assert [m.key() for m in replayed] == [b"k-1"]
    assert replayed[0].headers() == [("trace", b"t")]
    assert Alert.model_validate_json(replayed[0].value()) == alert(1)

    again = runner.invoke(app, ["dlq", "replay", "alerts"])
    assert "replayed 0" in again.output
    everything = runner.invoke(app, ["dlq", "replay", "alerts", "--from-beginning"])
    assert "replayed 2" in everything.output
    engine = make_engine(env["RBR_DATABASE_URL"])
    with engine.connect() as connection:
        entries = connection.execute(select(audit_log.c.action, audit_log.c.target)).all()
    engine.dispose()
    assert [tuple(e) for e in entries] == [("dlq.replay", "alerts.dlq")] * 3  # not the dry run


def test_status_reports_each_component_and_lag(env: dict[str, str], broker: Broker) -> None:
    runner.invoke(app, ["db", "upgrade"])
    producer = EventProducer(CommonSettings(kafka_bootstrap=broker.bootstrap), source="/t")
    for n in range(5):
        producer.send(ALERTS, f"k-{n}", alert(n))
    committed_two = _commit(broker, "notifier", "alerts", consumed=2)

    result = runner.invoke(app, ["status"])
    lines = result.output.splitlines()
    assert result.exit_code == 1, "S3 is unreachable, status must fail"
    assert any(line.startswith("broker") and " ok " in line for line in lines)
    assert any(line.startswith("database") and " ok " in line for line in lines)
    assert any(line.startswith("s3") and "FAIL" in line for line in lines)
    lag_line = next(line for line in lines if line.startswith("notifier"))
    assert lag_line.split()[-1] == str(5 - committed_two)


def _commit(broker: Broker, group: str, topic: str, consumed: int) -> int:
    """Commits `consumed` messages of partition-wise progress for a group; returns how many."""
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    messages = read_topic(broker.bootstrap, topic, at_least=5)
    first = messages[:consumed]
    offsets: dict[int, int] = {}
    for message in first:
        partition = message.partition() or 0
        offsets[partition] = max(offsets.get(partition, 0), (message.offset() or 0) + 1)
    consumer.commit(
        offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False
    )
    consumer.close()
    return sum(offsets.values())
