"""Daily retention of `logs` on MariaDB: dropping day partitions against deleting rows.

* partitions: logs holds 10M rows over 10 days (1M in quick mode), built by LOAD DATA of
  parsed simulator rows then INSERT ... SELECT doubling; the retention run that expires the
  5 oldest days (half the rows) is timed, as the parser runs it (goal < 10 s).
* rows (before): the same retention deleting rows by chunks (RBR_RETENTION_CHUNK), timed on
  a smaller unpartitioned table; the time it would take for the same rows is extrapolated.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from bench.bench_parser import _generate, _preparsed
from bench.figures import Figure
from rbr_parser.retention import delete_old_rows, row_cutoff
from rbr_parser.settings import ParserSettings
from rbr_parser.store import INSERT_COLUMNS, LogRows, encode_for_load
from rbr_runtime.db import partitions
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_schemas import LogsExtracted, LogSource
from rbr_testing.mariadb import create_database, drop_database, mysql_url

GOAL_SECONDS = 10.0
DAYS = 10
EXPIRED_DAYS = 5
BASE_ROWS = 15_625  # doubled 6 times: 1,000,000 a day
ROW_SAMPLE = 100_000


def _event() -> LogsExtracted:
    return LogsExtracted(
        object_id="bench-retention",
        name="rustbucket-bench",
        ip_address="203.0.113.9",
        s3_bucket="bench-raw",
        s3_key="raw/bench/retention.log",
        size_bytes=1,
        sha256="d" * 64,
        source=LogSource.HTTP,
        extracted_at=datetime(2026, 11, 21, tzinfo=UTC),
    )


def _load_base(engine: Engine, rows: int, created_at: datetime) -> None:
    """Loads `rows` parsed simulator rows, all created at one moment (one object)."""
    parsed = _preparsed(_generate(rows), _event())[:rows]
    for row in parsed:
        row["created_at"] = created_at
    store = LogRows(engine)
    for start in range(0, len(parsed), 5000):
        store.load(encode_for_load(parsed[start : start + 5000]))


def _double(engine: Engine, times: int) -> None:
    """Doubles the rows `times` times (new record numbers, same day)."""
    columns = ", ".join(INSERT_COLUMNS)
    copied = columns.replace("record_no", "record_no + @offset")
    for _ in range(times):
        with engine.begin() as connection:
            connection.execute(text("SELECT @offset := MAX(record_no) + 1 FROM logs"))
            connection.execute(text(f"INSERT INTO logs ({columns}) SELECT {copied} FROM logs"))


def _copy_to_days(engine: Engine, days: int) -> None:
    """Copies the first day's rows to each of the `days - 1` days after it."""
    columns = ", ".join(INSERT_COLUMNS)
    for day in range(1, days):
        shifted = columns.replace("created_at", f"created_at + INTERVAL {day} DAY")
        with engine.begin() as connection:
            connection.execute(
                text(
                    f"INSERT INTO logs ({columns}) SELECT {shifted} FROM logs "
                    f"WHERE created_at < (SELECT MIN(created_at) FROM logs) + INTERVAL 1 DAY"
                )
            )


def _count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT COUNT(*) FROM logs")).scalar_one())


def _partitioned_retention(quick: bool) -> tuple[float, int, int, float]:
    """Returns (retention seconds, rows deleted, rows before, build seconds)."""
    database = create_database()
    url = mysql_url(database)
    upgrade(url)
    engine = make_engine(url, local_infile=True)
    now = datetime.now(UTC)
    first_day = (now - timedelta(days=DAYS + 1)).replace(hour=12, minute=0, second=0)
    try:
        # Day partitions for the past days the rows fill (the migration made them from today).
        with engine.begin() as connection:
            connection.execute(
                text(
                    f"ALTER TABLE logs REORGANIZE PARTITION "
                    f"{(partitions.day_partitions(connection, 'logs') or [])[0].name} INTO "
                    f"{_past_days(first_day, now)}"
                )
            )
        started = time.perf_counter()
        _load_base(engine, BASE_ROWS // 10 if quick else BASE_ROWS, first_day)
        _double(engine, 6)
        _copy_to_days(engine, DAYS)
        build_seconds = time.perf_counter() - started
        before = _count(engine)
        cutoff = row_cutoff(now, DAYS + 1 - EXPIRED_DAYS)
        started = time.perf_counter()
        deleted = delete_old_rows(LogRows(engine), cutoff, ParserSettings().retention_chunk)
        seconds = time.perf_counter() - started
        assert _count(engine) == before - deleted
    finally:
        engine.dispose()
        drop_database(database)
    return seconds, deleted, before, build_seconds


def _past_days(first_day: datetime, now: datetime) -> str:
    """Returns the partition list from first_day's day to today (the first partition's)."""
    days = partitions.days_between(first_day.date(), now.date())
    return partitions.partition_definitions(days, catch_all=False)


def _row_retention_rate() -> float:
    """Returns the rows/s of retention by row deletes on an unpartitioned logs."""
    database = create_database()
    url = mysql_url(database)
    upgrade(url)
    engine = make_engine(url, local_infile=True)
    try:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE logs REMOVE PARTITIONING"))
        old = datetime.now(UTC) - timedelta(days=30)
        _load_base(engine, ROW_SAMPLE // 4, old)
        _double(engine, 2)
        rows = LogRows(engine)
        started = time.perf_counter()
        deleted = delete_old_rows(rows, old + timedelta(days=1), ParserSettings().retention_chunk)
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
        drop_database(database)
    return deleted / seconds


def run(quick: bool) -> list[Figure]:
    seconds, deleted, before, build_seconds = _partitioned_retention(quick)
    row_rate = _row_retention_rate()
    return [
        Figure(
            f"retention: drop {EXPIRED_DAYS} expired days of a {before / 1e6:.0f}M-row logs",
            seconds,
            "s",
            goal=f"< {GOAL_SECONDS:.0f} s",
            met=seconds < GOAL_SECONDS,
            note=f"{deleted:,} rows in {EXPIRED_DAYS} day partitions of {DAYS}; "
            f"table built in {build_seconds:.0f} s",
        ),
        Figure(
            "retention by row deletes (before), unpartitioned",
            row_rate,
            "rows/s",
            note=f"the same {deleted:,} rows would take ~{deleted / row_rate:,.0f} s",
        ),
    ]
