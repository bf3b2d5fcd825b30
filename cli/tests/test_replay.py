"""`rbr replay` against a real broker: plans, moves offsets, refuses a running group."""

from __future__ import annotations

import getpass
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from sqlalchemy import select
from typer.testing import CliRunner

from rbr_cli.main import app
from rbr_cli.replay_commands import parse_time
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_runtime.db.tables import audit_log
from rbr_testing.broker import Broker
from rbr_testing.kafka import committed_offsets
from rbr_testing.waiting import wait_for

TOPIC = "logs.extracted"
GROUP = "parser"
BASE_MS = 1_790_000_000_000  # 2026-09-21T...: the messages' own timestamps, one second apart
PER_PARTITION = 10


def _produce(bootstrap: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(2 * PER_PARTITION):
        producer.produce(
            TOPIC, key=b"k", value=b"{}", partition=i % 2, timestamp=BASE_MS + i * 1000
        )
    producer.flush(10)


def _group_consumer(bootstrap: str) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": GROUP,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 2000,
        }
    )
    consumer.subscribe([TOPIC])
    return consumer


def _consume_all_and_commit(bootstrap: str) -> None:
    consumer = _group_consumer(bootstrap)
    seen = 0
    deadline = time.monotonic() + 20
    while seen < 2 * PER_PARTITION and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is not None and message.error() is None:
            seen += 1
            consumer.commit(message, asynchronous=False)
    consumer.close()
    assert seen == 2 * PER_PARTITION


@pytest.fixture
def consumed(broker: Broker) -> Broker:
    _produce(broker.bootstrap)
    _consume_all_and_commit(broker.bootstrap)
    return broker


@pytest.fixture(autouse=True)
def audit_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated database of the test's own for the audit log (never the checkout's var/)."""
    url = f"sqlite:///{tmp_path}/rbr.db"
    monkeypatch.setenv("RBR_DATABASE_URL", url)
    upgrade(url)
    return url


def audited(url: str) -> list[tuple[str, str, str]]:
    """Returns the audit log's (actor, action, target) entries, oldest first."""
    engine = make_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            select(audit_log.c.actor, audit_log.c.action, audit_log.c.target).order_by(
                audit_log.c.id
            )
        ).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def rbr(bootstrap: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["replay", *args], env={"RBR_KAFKA_BOOTSTRAP": bootstrap})
    return result.exit_code, result.output


def test_replay_plans_and_moves_offsets(consumed: Broker, audit_database: str) -> None:
    bootstrap = consumed.bootstrap
    assert committed_offsets(bootstrap, GROUP, TOPIC) == {0: 10, 1: 10}

    code, out = rbr(bootstrap, TOPIC, "--group", GROUP, "--from-beginning", "--dry-run")
    assert code == 0, out
    assert "partition 0: 10 -> 0 (10 message(s) to process" in out
    assert "dry run" in out
    assert committed_offsets(bootstrap, GROUP, TOPIC) == {0: 10, 1: 10}
    assert audited(audit_database) == []  # a dry run changes nothing

    # The first message at or after +12.5 s is message 13 (partition 1, offset 6); in
    # partition 0 it is message 14 (offset 7). The embedded broker answers offsets_for_times
    # with 0, which the message timestamps contradict, so this also covers the fallback scan.
    moment = datetime.fromtimestamp((BASE_MS + 12_500) / 1000, UTC).isoformat()
    code, out = rbr(bootstrap, TOPIC, "--group", GROUP, "--from-time", moment)
    assert code == 0, out
    assert committed_offsets(bootstrap, GROUP, TOPIC) == {0: 7, 1: 6}
    assert "partition 1: 10 -> 6" in out
    assert audited(audit_database) == [
        (f"cli:{getpass.getuser()}", "topic.replay", f"{TOPIC} {GROUP}")
    ]

    code, out = rbr(bootstrap, TOPIC, "-g", GROUP, "--from-offset", "3", "--partition", "1")
    assert code == 0, out
    assert committed_offsets(bootstrap, GROUP, TOPIC) == {0: 7, 1: 3}

    # Forward (3 -> 5) would skip two unprocessed messages: refused unless asked for.
    code, out = rbr(bootstrap, TOPIC, "-g", GROUP, "--from-offset", "5", "--partition", "1")
    assert code == 1
    assert "refusing to move offsets FORWARD on partition(s) 1: 2 message(s)" in out
    assert "--allow-skip" in out
    assert committed_offsets(bootstrap, GROUP, TOPIC) == {0: 7, 1: 3}
    code, out = rbr(
        bootstrap, TOPIC, "-g", GROUP, "--from-offset", "5", "--partition", "1", "--allow-skip"
    )
    assert code == 0, out
    assert committed_offsets(bootstrap, GROUP, TOPIC) == {0: 7, 1: 5}
    code, out = rbr(bootstrap, TOPIC, "-g", GROUP, "--from-offset", "3", "--partition", "1")
    assert code == 0, out

    code, out = rbr(bootstrap, TOPIC, "-g", GROUP, "--from-offset", "99", "--partition", "0")
    assert code == 1
    assert "offset 99 is outside partition 0" in out
    code, out = rbr(bootstrap, TOPIC, "-g", GROUP, "--from-beginning", "--from-offset", "1")
    assert code == 2
    assert "exactly one of" in out
    assert committed_offsets(bootstrap, GROUP, TOPIC) == {0: 7, 1: 3}


def test_replay_refuses_while_the_group_runs(consumed: Broker) -> None:
    consumer = _group_consumer(consumed.bootstrap)
    try:
        wait_for(lambda: consumer.poll(0.1) is None and consumer.assignment(), timeout=20)
        code, out = rbr(consumed.bootstrap, TOPIC, "--group", GROUP, "--from-beginning")
    finally:
        consumer.close()
    assert code == 1
    assert "active" in out
    assert "stop" in out.lower()
    assert committed_offsets(consumed.bootstrap, GROUP, TOPIC) == {0: 10, 1: 10}


def test_parse_time_accepts_iso_and_durations() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert parse_time("2026-11-21T09:00:00Z") == datetime(2026, 11, 21, 9, tzinfo=UTC)
    assert parse_time("2026-11-21 09:00") == datetime(2026, 11, 21, 9, tzinfo=UTC)
    assert parse_time("90m", now) == datetime(2026, 11, 21, 10, 30, tzinfo=UTC)
    assert parse_time("2d", now) == datetime(2026, 11, 19, 12, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday")
