"""The parser service against the real broker, MariaDB and S3 (moto).

Objects are generated with ground truth (the simulator's generator) and every row is
compared with it; redelivery, replay, a DB outage and a SIGKILL must not change the rows.
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from rbr_cli.main import app
from rbr_parser import parsing
from rbr_parser.main import build_service
from rbr_parser.settings import ParserSettings
from rbr_parser.store import LogRows
from rbr_runtime.db.tables import logs
from rbr_runtime.kafka.admin import GroupOffsets, ReplayStart
from rbr_schemas import LOGS_EXTRACTED, LOGS_PARSED, DeadLetterHeaders, LogsParsed, utcnow
from rbr_simulator.generator import LogGenerator
from rbr_simulator.records import LogMix, LogRecord
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events, read_topic
from rbr_testing.log_truth import all_rows, mismatches, rows_of_object
from rbr_testing.services import running
from rbr_testing.tcp_proxy import TcpProxyFactory
from rbr_testing.waiting import wait_for

START = datetime(2025, 10, 28, 19, 0, tzinfo=UTC)


def generate(count: int, seed: int, hostile: float = 0.1) -> list[LogRecord]:
    mix = LogMix(hostile_fraction=hostile, long_line_chars=5000)
    return LogGenerator(seed, mix=mix, start=START).generate(count)


def body(records: list[LogRecord]) -> bytes:
    return b"".join(record.data for record in records)


def parsed_events(bootstrap: str, at_least: int) -> list[LogsParsed]:
    return [e.data for e in read_events(bootstrap, LOGS_PARSED, at_least=at_least, timeout=60)]


def row_count(engine: Engine) -> int:
    with engine.connect() as connection:
        count: int = connection.execute(select(func.count()).select_from(logs)).scalar_one()
    return count


def test_objects_become_exactly_the_expected_rows_and_redelivery_adds_none(
    settings: ParserSettings, mysql_engine: Engine, raw_objects: Any, broker: Broker
) -> None:
    records = generate(1500, seed=11, hostile=0.3)
    plain = raw_objects.store("rustbucket-a1", body(records))
    # An object without the extractor's metadata is hashed first; a gzip one is unpacked.
    second = generate(300, seed=12)
    zipped = raw_objects.store("rustbucket-b2", gzip.compress(body(second)), metadata=False)
    raw_objects.publish(plain, zipped)

    with running(build_service(settings)):
        first_round = parsed_events(broker.bootstrap, at_least=2)
        assert mismatches(rows_of_object(mysql_engine, plain.sha256), records) == []
        assert mismatches(rows_of_object(mysql_engine, zipped.sha256), second) == []
        raw_objects.publish(plain)  # redelivered
        events = parsed_events(broker.bootstrap, at_least=3)

    summary = {e.s3_key: e for e in first_round}[plain.s3_key]
    assert (summary.records, summary.rows_inserted, summary.duplicates_skipped) == (1500, 1500, 0)
    assert summary.unparsed_records == 0
    assert sum(summary.event_counts.values()) == 1500
    assert summary.first_event_at == records[0].timestamp
    plain_events = sorted(
        (e.rows_inserted, e.duplicates_skipped) for e in events if e.s3_key == plain.s3_key
    )
    assert plain_events == [(0, 1500), (1500, 0)]
    assert row_count(mysql_engine) == 1800
    row = rows_of_object(mysql_engine, plain.sha256)[0]
    assert (row["name"], row["ip_address"], row["source_key"]) == (
        "rustbucket-a1",
        "203.0.113.5",
        plain.s3_key,
    )


def test_missing_or_altered_objects_go_to_the_dlq_without_blocking(
    settings: ParserSettings, mysql_engine: Engine, raw_objects: Any, broker: Broker
) -> None:
    good = raw_objects.store("rustbucket-ok", body(generate(50, seed=3)))
    missing = good.model_copy(update={"s3_key": "raw/rustbucket-ok/2025/10/29/gone.log"})
    altered = raw_objects.store("rustbucket-ok", b"2025-10-28T19:05:41Z  INFO rustbucket: x\n")
    raw_objects.s3.put_object(  # replaced after its event was made
        Bucket=altered.s3_bucket, Key=altered.s3_key, Body=b"something else\n"
    )
    raw_objects.publish(missing, altered, good)

    with running(build_service(settings)):
        dead = read_topic(broker.bootstrap, LOGS_EXTRACTED.dlq, at_least=2, timeout=60)
        parsed = parsed_events(broker.bootstrap, at_least=1)

    reasons = sorted(DeadLetterHeaders.from_kafka(m.headers() or []).error for m in dead)
    assert "does not exist" in reasons[0]
    assert "is not the object the event describes" in reasons[1]
    assert [p.s3_key for p in parsed] == [good.s3_key]
    assert row_count(mysql_engine) == 50


def test_replay_from_the_beginning_leaves_the_same_rows(
    settings: ParserSettings, mysql_engine: Engine, raw_objects: Any, broker: Broker
) -> None:
    events = [raw_objects.store(f"rustbucket-r{i}", body(generate(200, seed=i))) for i in range(3)]
    raw_objects.publish(*events)
    batches_before = _batches()
    with running(build_service(settings)):
        parsed_events(broker.bootstrap, at_least=3)
    before = all_rows(mysql_engine)
    # One object per batch (all three were waiting together): a stop or a rebalance parses
    # at most the object in hand again.
    assert _batches() - batches_before == 3

    offsets = GroupOffsets(settings, "parser", LOGS_EXTRACTED.name)
    moves = offsets.plan(ReplayStart(beginning=True))
    offsets.apply(moves)
    assert sum(m.to_reprocess for m in moves) == 3

    with running(build_service(settings)):
        replayed = parsed_events(broker.bootstrap, at_least=6)
    assert all_rows(mysql_engine) == before
    outcomes = sorted((e.rows_inserted, e.duplicates_skipped) for e in replayed)
    assert outcomes == [(0, 200)] * 3 + [(200, 0)] * 3


def _batches() -> float:
    return REGISTRY.get_sample_value("rbr_batch_seconds_count", {"group": "parser"}) or 0.0


def _retries() -> float:
    return REGISTRY.get_sample_value("rbr_handler_retries_total", {"group": "parser"}) or 0.0


def test_database_outage_waits_and_loses_nothing(
    settings_factory: Any,
    mysql_database_url: str,
    mysql_engine: Engine,
    raw_objects: Any,
    broker: Broker,
    tcp_proxy_factory: TcpProxyFactory,
) -> None:
    url = make_url(mysql_database_url)
    proxy = tcp_proxy_factory(url.host or "127.0.0.1", url.port or 3306)
    through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    settings = settings_factory(database_url=through_proxy, parser_insert_batch=100)
    records = generate(3000, seed=21)
    event = raw_objects.store("rustbucket-db", body(records))

    with running(build_service(settings)):
        retries_before = _retries()
        proxy.cut()
        raw_objects.publish(event)
        wait_for(lambda: _retries() >= retries_before + 2, timeout=30, message="retries")
        assert row_count(mysql_engine) == 0
        proxy.restore()
        parsed = parsed_events(broker.bootstrap, at_least=1)

    assert parsed[0].records == 3000
    assert mismatches(rows_of_object(mysql_engine, event.sha256), records) == []


def test_killed_mid_object_and_restarted_ends_with_exactly_the_expected_rows(
    settings: ParserSettings, mysql_engine: Engine, raw_objects: Any, broker: Broker
) -> None:
    records = generate(40_000, seed=31, hostile=0.02)
    event = raw_objects.store("rustbucket-big", body(records))
    raw_objects.publish(event)
    env = {
        **os.environ,
        "RBR_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "RBR_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "RBR_DATABASE_URL": settings.database_url,
        "RBR_S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
        "RBR_S3_BUCKET": settings.s3_bucket,
        "RBR_HTTP_PORT": "0",
        "RBR_PARSER_INSERT_BATCH": "500",
        "RBR_LOG_RETENTION_DAYS": "0",
        "RBR_RAW_RETENTION_DAYS": "0",
        "RBR_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "rbr_parser"]

    first = subprocess.Popen(command, env=env)
    try:
        wait_for(lambda: row_count(mysql_engine) > 0, timeout=60, message="first rows")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    partial = row_count(mysql_engine)
    assert 0 < partial < len(records), "killed before the object was done"

    second = subprocess.Popen(command, env=env)
    try:
        parsed = parsed_events(broker.bootstrap, at_least=1)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert second.returncode == 0
    assert parsed[0].records == len(records)
    assert parsed[0].rows_inserted == len(records) - partial
    assert mismatches(rows_of_object(mysql_engine, event.sha256), records) == []


def _processed() -> float:
    labels = {"group": "parser", "topic": LOGS_EXTRACTED.name}
    return REGISTRY.get_sample_value("rbr_messages_processed_total", labels) or 0.0


def test_an_object_parsed_past_the_poll_interval_is_parsed_once_and_the_member_stays(
    settings_factory: Any,
    mysql_engine: Engine,
    raw_objects: Any,
    broker: Broker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A parse that outlasts max.poll.interval.ms no longer gets the member evicted.

    The handler runs off the poll thread: the group keeps the member, the object is parsed
    once, announced once and committed once.
    """
    interval_ms = 3000
    settings = settings_factory(kafka_max_poll_interval_ms=interval_ms)
    records = generate(300, seed=41)
    event = raw_objects.store("rustbucket-slow", body(records))
    opened: list[str] = []
    real_open = parsing.open_object

    def counting_open(s3: Any, bucket: str, key: str) -> Any:
        opened.append(key)
        return real_open(s3, bucket, key)

    group = GroupOffsets(settings, "parser", LOGS_EXTRACTED.name)
    held: list[bool] = []
    real_insert = LogRows.insert

    def slow_insert(self: LogRows, *args: Any, **kwargs: Any) -> int:
        if not held:
            # The parse outlasts max.poll.interval: its write is held twice that long.
            since = time.monotonic()
            wait_for(
                lambda: time.monotonic() - since > 2 * interval_ms / 1000,
                timeout=60,
                message="held past the poll interval",
            )
            held.append(group.activity().active)
        return real_insert(self, *args, **kwargs)

    monkeypatch.setattr(parsing, "open_object", counting_open)
    monkeypatch.setattr(LogRows, "insert", slow_insert)
    processed_before = _processed()
    raw_objects.publish(event)
    with running(build_service(settings)):
        wait_for(lambda: _processed() > processed_before, timeout=120, message="committed")
    assert held == [True], "the member left the group while the object was parsed"
    assert opened == [event.s3_key], "parsed again"
    parsed = parsed_events(broker.bootstrap, at_least=1)
    assert [(p.rows_inserted, p.duplicates_skipped) for p in parsed] == [(300, 0)]
    assert mismatches(rows_of_object(mysql_engine, event.sha256), records) == []


def test_an_object_redelivered_before_its_commit_keeps_its_rows_and_its_logs_parsed_id(
    settings: ParserSettings, mysql_engine: Engine, raw_objects: Any, broker: Broker
) -> None:
    """A crash between an object's last write and its commit: the redelivery changes nothing.

    The object is parsed again, inserts no row, and logs.parsed goes out again under the
    same id (at-least-once), so a consumer of logs.parsed sees one object, not two.
    """
    records = generate(300, seed=41)
    event = raw_objects.store("rustbucket-crash", body(records))
    raw_objects.publish(event)
    with running(build_service(settings)):
        parsed_events(broker.bootstrap, at_least=1)
    rows = rows_of_object(mysql_engine, event.sha256)

    # What a crash right after the last write leaves: the rows in, logs.parsed sent, the
    # offset not committed.
    offsets = GroupOffsets(settings, "parser", LOGS_EXTRACTED.name)
    moves = offsets.plan(ReplayStart(beginning=True))
    offsets.apply(moves)
    assert sum(m.to_reprocess for m in moves) == 1
    with running(build_service(settings)):
        announced = read_events(broker.bootstrap, LOGS_PARSED, at_least=2, timeout=60)

    assert [e.id for e in announced] == [parsing.parsed_event_id(event)] * 2
    outcomes = [
        (e.data.records, e.data.rows_inserted, e.data.duplicates_skipped) for e in announced
    ]
    assert outcomes == [(300, 300, 0), (300, 0, 300)]
    assert rows_of_object(mysql_engine, event.sha256) == rows  # ids and created_at included
    assert mismatches(rows, records) == []


def test_an_object_that_cannot_be_parsed_is_dead_lettered_alone_from_its_batch(
    settings_factory: Any,
    mysql_engine: Engine,
    raw_objects: Any,
    broker: Broker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The objects before and after it in its batch are parsed once, not again one by one."""
    settings = settings_factory(consumer_batch_size=3)
    first = raw_objects.store("rustbucket-batch", body(generate(40, seed=61)))
    last = raw_objects.store("rustbucket-batch", body(generate(60, seed=62)))
    missing = first.model_copy(
        update={"s3_key": "raw/rustbucket-batch/2025/10/29/gone.log", "object_id": "gone"}
    )
    opened: list[str] = []
    real_open = parsing.open_object

    def counting_open(s3: Any, bucket: str, key: str) -> Any:
        opened.append(key)
        return real_open(s3, bucket, key)

    monkeypatch.setattr(parsing, "open_object", counting_open)
    raw_objects.publish(first, missing, last)
    batches_before, processed_before = _batches(), _processed()
    with running(build_service(settings)):
        (dead,) = read_topic(broker.bootstrap, LOGS_EXTRACTED.dlq, at_least=1, timeout=60)
        wait_for(lambda: _processed() - processed_before == 3, timeout=30, message="all committed")
    parsed = parsed_events(broker.bootstrap, at_least=2)  # all of them: sent before the commit

    assert _batches() - batches_before == 1, "the three events were not one batch"
    assert opened == [first.s3_key, last.s3_key]
    assert [p.s3_key for p in parsed] == [first.s3_key, last.s3_key]
    headers = DeadLetterHeaders.from_kafka(dead.headers() or [])
    assert (headers.error_class, headers.source_offset) == ("rejected", 1)
    assert "does not exist" in headers.error
    assert row_count(mysql_engine) == 100


def test_the_rows_of_an_object_share_the_created_at_the_parser_gave_them(
    settings_factory: Any, mysql_engine: Engine, raw_objects: Any, broker: Broker
) -> None:
    settings = settings_factory(parser_insert_batch=100)  # ten transactions
    event = raw_objects.store("rustbucket-when", body(generate(1000, seed=51)))
    raw_objects.publish(event)
    before = utcnow()
    with running(build_service(settings)):
        parsed_events(broker.bootstrap, at_least=1)
    after = utcnow()
    with mysql_engine.connect() as connection:
        moments = connection.execute(select(logs.c.created_at).distinct()).scalars().all()
    assert len(moments) == 1
    assert before <= moments[0] <= after


def test_a_corrupt_gzip_object_keeps_the_rows_before_the_damage_and_is_dead_lettered(
    settings_factory: Any, mysql_engine: Engine, raw_objects: Any, broker: Broker
) -> None:
    settings = settings_factory(parser_insert_batch=100)
    readable = generate(500, seed=61)
    # A second gzip member whose deflate data is zeros: an invalid stored block.
    damaged = bytearray(gzip.compress(body(generate(100, seed=62))))
    damaged[10:] = bytes(len(damaged) - 10)
    event = raw_objects.store("rustbucket-zip", gzip.compress(body(readable)) + damaged)
    raw_objects.publish(event)

    with running(build_service(settings)):
        [dead] = read_topic(broker.bootstrap, LOGS_EXTRACTED.dlq, at_least=1, timeout=60)
    headers = DeadLetterHeaders.from_kafka(dead.headers() or [])
    assert headers.error_class == "rejected"
    assert headers.error.startswith("raw object is not valid gzip")
    kept = rows_of_object(mysql_engine, event.sha256)
    assert 400 <= len(kept) <= len(readable)  # whole insert batches before the damage
    assert mismatches(kept, readable[: len(kept)]) == []

    # Sent back unchanged, it fails the same way and inserts nothing twice.
    replay = CliRunner().invoke(
        app, ["dlq", "replay", LOGS_EXTRACTED.name], env={"RBR_KAFKA_BOOTSTRAP": broker.bootstrap}
    )
    assert replay.exit_code == 0, replay.output
    with running(build_service(settings)):
        dead_again = read_topic(broker.bootstrap, LOGS_EXTRACTED.dlq, at_least=2, timeout=60)
    assert len(dead_again) == 2
    assert rows_of_object(mysql_engine, event.sha256) == kept
    assert row_count(mysql_engine) == len(kept)
