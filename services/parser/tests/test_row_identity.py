"""Whose rows: identical content from two buckets, or twice from one (real broker, MariaDB, S3).

A row is identified by (object sha256, bucket, record number): two buckets sending the same
bytes each keep their rows; one bucket's content stored again under another key (a real
rustbucket re-uploads its earlier daily files under a new instance folder after a restart)
adds none.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select

from rbr_parser.main import build_service
from rbr_parser.settings import ParserSettings
from rbr_runtime.db.tables import logs
from rbr_runtime.kafka.admin import GroupOffsets, ReplayStart
from rbr_schemas import LOGS_EXTRACTED, LOGS_PARSED, CloudEvent, LogsParsed
from rbr_simulator.generator import LogGenerator
from rbr_simulator.records import LogMix, LogRecord
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events
from rbr_testing.log_truth import all_rows, mismatches, rows_of_object
from rbr_testing.services import running

START = datetime(2025, 10, 28, 19, 0, tzinfo=UTC)


def generate(count: int, seed: int) -> list[LogRecord]:
    return LogGenerator(seed, mix=LogMix(hostile_fraction=0.2), start=START).generate(count)


def body(records: list[LogRecord]) -> bytes:
    return b"".join(record.data for record in records)


def parsed_events(bootstrap: str, at_least: int) -> list[CloudEvent[LogsParsed]]:
    return read_events(bootstrap, LOGS_PARSED, at_least=at_least, timeout=60)


def row_count(engine: Engine) -> int:
    with engine.connect() as connection:
        count: int = connection.execute(select(func.count()).select_from(logs)).scalar_one()
    return count


def test_identical_objects_of_two_buckets_each_get_their_rows_and_a_replay_adds_none(
    settings: ParserSettings, mysql_engine: Engine, raw_objects: Any, broker: Broker
) -> None:
    records = generate(1000, seed=71)
    one = raw_objects.store("rustbucket-one", body(records))
    # Two buckets copying one S3 source get the same object id (derived from the source's
    # URI and ETag) under keys of their own.
    two = raw_objects.store("rustbucket-two", body(records)).model_copy(
        update={"object_id": one.object_id}
    )
    assert one.sha256 == two.sha256
    raw_objects.publish(one, two)

    with running(build_service(settings)):
        first = parsed_events(broker.bootstrap, at_least=2)
    for event in (one, two):
        rows = rows_of_object(mysql_engine, event.sha256, event.name)
        assert mismatches(rows, records) == [], event.name
        assert {row["source_key"] for row in rows} == {event.s3_key}
    assert row_count(mysql_engine) == 2000
    assert sorted((e.data.name, e.data.rows_inserted) for e in first) == [
        ("rustbucket-one", 1000),
        ("rustbucket-two", 1000),
    ]
    assert len({e.id for e in first}) == 2, "one logs.parsed id for two buckets' objects"
    before = all_rows(mysql_engine)

    offsets = GroupOffsets(settings, "parser", LOGS_EXTRACTED.name)
    offsets.apply(offsets.plan(ReplayStart(beginning=True)))
    with running(build_service(settings)):
        events = parsed_events(broker.bootstrap, at_least=4)

    assert all_rows(mysql_engine) == before
    outcomes = sorted(
        (e.data.name, e.data.rows_inserted, e.data.duplicates_skipped) for e in events
    )
    assert outcomes == [
        ("rustbucket-one", 0, 1000),
        ("rustbucket-one", 1000, 0),
        ("rustbucket-two", 0, 1000),
        ("rustbucket-two", 1000, 0),
    ]
    # The same event replayed is recognisably the same logs.parsed.
    assert {e.id for e in events} == {e.id for e in first}


def test_one_buckets_content_stored_again_under_another_key_adds_no_rows(
    settings: ParserSettings, mysql_engine: Engine, raw_objects: Any, broker: Broker
) -> None:
    records = generate(800, seed=72)
    # A restarted rustbucket uploads its earlier daily file again under its new instance
    # folder: the same bytes, another source, so another raw object of the same bucket.
    uploaded = raw_objects.store("rustbucket-restarted", body(records))
    again = raw_objects.store("rustbucket-restarted", body(records))
    assert uploaded.s3_key != again.s3_key
    raw_objects.publish(uploaded, again)

    with running(build_service(settings)):
        parsed = parsed_events(broker.bootstrap, at_least=2)

    rows = rows_of_object(mysql_engine, uploaded.sha256, uploaded.name)
    assert mismatches(rows, records) == []
    assert {row["source_key"] for row in rows} == {uploaded.s3_key}
    assert row_count(mysql_engine) == 800
    outcomes = [(e.data.s3_key, e.data.rows_inserted, e.data.duplicates_skipped) for e in parsed]
    assert outcomes == [(uploaded.s3_key, 800, 0), (again.s3_key, 0, 800)]
