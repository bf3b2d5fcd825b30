"""The fast paths against the slow ones: LOAD DATA and the parse process against in-process
parsing and INSERT; dropping day partitions against deleting rows (MariaDB and SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, text

from rbr_parser.formats import PARSED_COLUMNS
from rbr_parser.parse_process import (
    ObjectJob,
    ObjectStats,
    ParseProcess,
    _copy_stats,
    object_rows,
)
from rbr_parser.retention import delete_old_rows, row_cutoff
from rbr_parser.store import LogRows
from rbr_runtime.db import partitions
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_runtime.db.tables import log_objects, logs
from rbr_simulator.generator import LogGenerator
from rbr_simulator.records import LogMix
from rbr_testing.mariadb import create_database, drop_database, mysql_url

START = datetime(2025, 10, 28, 19, 0, tzinfo=UTC)
SHA = "c" * 64
# Every character LOAD DATA's format gives a meaning to, and more attacker-shaped text.
HOSTILE_LINES = (
    b"back\\slash \\N \\t \\\\ tab\there nul\x00 sub\x1a cr\r quote' dq\" \xe2\x80\xae bidi \xff\n"
    b"\\N\n"
    b"2025-10-28T19:00:01.000000Z  INFO rustbucket::ssh: payload: a\tb\\c\n"
    b"  continued \\n line\twith tab\n"
    b"N\n"
)


def object_body(records: int = 1500) -> bytes:
    generated = LogGenerator(7, mix=LogMix(hostile_fraction=0.3), start=START).generate(records)
    return b"".join(record.data for record in generated) + HOSTILE_LINES


def job(created_at: datetime, *, batch_rows: int = 400) -> ObjectJob:
    return ObjectJob(
        reference_time=START + timedelta(days=1),
        syslog_timezone="UTC",
        max_line_bytes=1 << 20,
        max_log_bytes=65_536,
        batch_rows=batch_rows,
        row_values={
            "created_at": created_at,
            "name": "rb-paths",
            "ip_address": "203.0.113.7",
            "source_key": "raw/rb-paths/x.log",
            "source_sha256": SHA,
        },
    )


def chunks(data: bytes, size: int = 4096) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture
def parse_process() -> Iterator[ParseProcess]:
    process = ParseProcess()
    yield process
    process.stop()


@pytest.fixture
def mariadb_urls() -> Iterator[list[str]]:
    """Two empty databases on the real MariaDB (migrated by the test)."""
    names = [create_database(), create_database()]
    yield [mysql_url(name) for name in names]
    for name in names:
        drop_database(name)


def stored_rows(engine: Engine) -> list[dict[str, Any]]:
    """Returns every logs row, every column but the id, in record order."""
    columns = [column for column in logs.columns if column.name != "id"]
    with engine.connect() as connection:
        result = connection.execute(select(*columns).order_by(logs.c.record_no))
        return [dict(row._mapping) for row in result]


def load_old_way(engine: Engine, data: bytes, created_at: datetime) -> int:
    """Parses in this process and inserts by INSERT IGNORE (the path before LOAD DATA)."""
    rows = LogRows(engine, bulk_load=False)
    batches = object_rows(job(created_at), chunks(data), ObjectStats())
    return sum(rows.insert(batch) for _, batch in batches)


def load_new_way(
    engine: Engine, process: ParseProcess, data: bytes, created_at: datetime
) -> tuple[int, ObjectStats]:
    """Parses in the parse process and loads what it sends as the parser does (LOAD DATA)."""
    rows = LogRows(engine)
    stats = ObjectStats()
    batches = process.parse(job(created_at), chunks(data), stats)
    return sum(rows.insert(rows.prepared(batch)) for _, batch in batches), stats


@pytest.mark.mariadb
def test_load_data_stores_the_same_rows_as_insert_on_mariadb(
    mariadb_urls: list[str], parse_process: ParseProcess
) -> None:
    data = object_body()
    created_at = datetime.now(UTC).replace(microsecond=123456)
    old_url, new_url = mariadb_urls
    upgrade(old_url)
    upgrade(new_url)
    old_engine = make_engine(old_url)
    new_engine = make_engine(new_url, local_infile=True)
    try:
        assert LogRows(new_engine).loads_encoded(), "the new path is LOAD DATA"
        inserted_old = load_old_way(old_engine, data, created_at)
        inserted_new, stats = load_new_way(new_engine, parse_process, data, created_at)
        assert inserted_new == inserted_old == stats.records > 1500
        old_rows, new_rows = stored_rows(old_engine), stored_rows(new_engine)
        assert new_rows == old_rows
        hostile = "".join(row["log"] for row in new_rows[-5:])
        for special in ("\\N", "\t", "\\", "\x1a", "'"):
            assert special in hostile
        assert any(row["http_status"] is None for row in new_rows), "NULL stays NULL"
        assert any(row["http_status"] is not None for row in new_rows)

        # A replay through the new path inserts nothing, the same rows stay.
        again, _ = load_new_way(new_engine, parse_process, data, created_at)
        assert again == 0
        assert stored_rows(new_engine) == old_rows
    finally:
        old_engine.dispose()
        new_engine.dispose()


def test_the_parse_process_stores_the_same_rows_as_parsing_in_process_on_sqlite(
    tmp_path: Path, parse_process: ParseProcess
) -> None:
    data = object_body()
    created_at = datetime.now(UTC)
    engines = []
    for name in ("old", "new"):
        url = f"sqlite:///{tmp_path / name}.db"
        upgrade(url)
        engines.append(make_engine(url, local_infile=True))
    old_engine, new_engine = engines
    try:
        assert not LogRows(new_engine).loads_encoded()
        inserted_old = load_old_way(old_engine, data, created_at)
        inserted_new, _ = load_new_way(new_engine, parse_process, data, created_at)
        assert inserted_new == inserted_old > 1500
        assert stored_rows(new_engine) == stored_rows(old_engine)
        again, _ = load_new_way(new_engine, parse_process, data, created_at)
        assert again == 0
    finally:
        old_engine.dispose()
        new_engine.dispose()


def test_a_broken_object_fails_and_the_next_one_parses(parse_process: ParseProcess) -> None:
    created_at = datetime.now(UTC)
    broken = b"\x1f\x8b\x08\x00not gzip at all"
    with pytest.raises(Exception, match="not valid gzip"):
        list(parse_process.parse(job(created_at), chunks(broken), ObjectStats()))
    stats = ObjectStats()
    batches = list(parse_process.parse(job(created_at), chunks(b"a\nb\n"), stats))
    assert stats.records == 2
    assert [(last, len(batch)) for last, batch in batches] == [(True, 2)]
    assert [row["log"] for row in batches[0][1]] == ["a", "b"]  # type: ignore[index]


def test_an_object_whose_reading_fails_raises_that_error_and_the_next_one_parses(
    parse_process: ParseProcess,
) -> None:
    def failing_read() -> Iterator[bytes]:
        yield b"first line\nsecond"
        raise ConnectionResetError("S3 went away mid-object")

    created_at = datetime.now(UTC)
    with pytest.raises(ConnectionResetError, match="mid-object"):
        list(parse_process.parse(job(created_at), failing_read(), ObjectStats()))
    stats = ObjectStats()
    list(parse_process.parse(job(created_at), chunks(b"a\n"), stats))
    assert stats.records == 1


def days_rows(now: datetime) -> list[dict[str, Any]]:
    """Rows of 36 objects created over 12 days, at midnight, midday and just before midnight."""
    rows = []
    for days_ago in range(12):
        day = (now - timedelta(days=days_ago)).replace(hour=0, minute=0, second=0, microsecond=0)
        for number, moment in enumerate(
            (day, day + timedelta(hours=12), day + timedelta(days=1, microseconds=-1))
        ):
            rows.append(
                dict.fromkeys(PARSED_COLUMNS)
                | {
                    "log_format": "unknown",
                    "event_type": "unparsed",
                    "name": "rb-days",
                    "ip_address": "203.0.113.5",
                    "log": f"{days_ago} days ago",
                    "log_size": 10,
                    "source_key": f"raw/rb-days/{days_ago}.log",
                    "source_sha256": f"{days_ago:032d}{number:032d}",
                    "record_no": 0,
                    "created_at": moment,
                }
            )
    return rows


def identities(engine: Engine) -> set[tuple[str, int]]:
    with engine.connect() as connection:
        result = connection.execute(select(logs.c.source_sha256, logs.c.record_no))
        return {(row.source_sha256, row.record_no) for row in result}


def filled_before_partitioning(url: str, rows: list[dict[str, Any]]) -> Engine:
    """Migrates to the revision before 0028, stores rows, then migrates to the head."""
    upgrade(url, "0024")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(insert(logs), rows)
    upgrade(url)
    return engine


@pytest.mark.mariadb
def test_dropping_partitions_deletes_exactly_what_deleting_rows_deletes(
    mariadb_urls: list[str], tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    rows = days_rows(now)
    cutoff = row_cutoff(now, 5)
    partitioned_url, _ = mariadb_urls
    sqlite_url = f"sqlite:///{tmp_path / 'rows.db'}"
    partitioned = filled_before_partitioning(partitioned_url, rows)
    by_rows = filled_before_partitioning(sqlite_url, rows)
    try:
        with partitioned.connect() as connection:
            before = partitions.day_partitions(connection, "logs")
        assert before is not None
        assert len(before) == 12 + 7, "oldest day to a week ahead"

        dropped = delete_old_rows(LogRows(partitioned), cutoff, chunk=1)
        deleted = delete_old_rows(LogRows(by_rows), cutoff, chunk=1)

        assert dropped == deleted == 6 * 3, "the days before the 5th day ago"
        assert identities(partitioned) == identities(by_rows)
        kept = {
            (row["source_sha256"], row["record_no"]) for row in rows if row["created_at"] >= cutoff
        }
        assert identities(partitioned) == kept
        with partitioned.connect() as connection:
            after = partitions.day_partitions(connection, "logs") or []
            objects = connection.execute(select(log_objects.c.source_sha256)).scalars().all()
        assert [p.day for p in after] == [p.day for p in before[6:]], "whole days dropped"
        assert len(objects) == 6 * 3, "the objects of the days dropped are forgotten"
    finally:
        partitioned.dispose()
        by_rows.dispose()


@pytest.mark.mariadb
def test_an_insert_for_a_day_without_partition_succeeds_and_moves_to_its_day(
    mariadb_urls: list[str],
) -> None:
    url, _ = mariadb_urls
    upgrade(url)
    engine = make_engine(url, local_infile=True)
    rows = LogRows(engine)
    today = datetime.now(UTC).date()
    far = datetime.now(UTC) + timedelta(days=40)
    try:
        created_at = rows.object_created_at("rb-far", SHA, far)
        batch = [
            dict.fromkeys(PARSED_COLUMNS)
            | {
                "log_format": "unknown",
                "event_type": "unparsed",
                "name": "rb-far",
                "ip_address": "203.0.113.5",
                "log": "from the future",
                "log_size": 15,
                "source_key": "raw/rb-far/x.log",
                "source_sha256": SHA,
                "record_no": number,
                "created_at": created_at,
            }
            for number in range(3)
        ]
        assert rows.insert(batch) == 3  # into the catch-all partition

        created = rows.create_days_ahead(today, 45)
        assert partitions.partition_name(far.date()) in created
        assert rows.create_days_ahead(today, 45) == [], "nothing more to make"
        with engine.connect() as connection:
            in_its_day = connection.execute(
                text(
                    f"SELECT COUNT(*) FROM logs PARTITION ({partitions.partition_name(far.date())})"
                )
            ).scalar_one()
        assert in_its_day == 3
        # A replay after the reorganisation still meets its rows.
        assert rows.insert(batch) == 0
        assert rows.object_created_at("rb-far", SHA, datetime.now(UTC)) == created_at
    finally:
        engine.dispose()


def test_records_a_format_fails_on_are_counted_and_reach_the_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The parse runs in a process whose metrics nobody scrapes: its count of records a
    # format's code failed on must travel back with the object's stats.
    def broken(*_: Any) -> None:
        raise ValueError("a bug in a format's code")

    monkeypatch.setattr("rbr_parser.rustbucket.parse_text", broken)
    body = b"2025-10-28T19:00:01.000000Z  INFO rustbucket::ssh: one\n" * 3
    stats = ObjectStats()
    rows = [row for _, batch in object_rows(job(START), chunks(body), stats) for row in batch]
    assert [row["event_type"] for row in rows] == ["unparsed"] * 3  # kept, as unparsed
    assert stats.record_errors == 3
    received = ObjectStats()
    _copy_stats(stats, received)
    assert received.record_errors == 3
