"""Retention (rows and raw objects, once per day across replicas, by hand) and ground truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert, select
from typer.testing import CliRunner

from rbr_cli.main import app
from rbr_parser.formats import ParseContext
from rbr_parser.lines import iter_lines
from rbr_parser.records import RecordReader
from rbr_parser.retention import run_retention
from rbr_parser.store import LogRows, _mysql_literal
from rbr_runtime.db.tables import logs, task_runs
from rbr_runtime.schedule import DailyTask, TaskClaims
from rbr_simulator.generator import LogGenerator
from rbr_simulator.records import LogMix
from rbr_testing.log_truth import expected_row
from rbr_testing.s3 import MotoS3

NOW = datetime(2026, 11, 21, 2, 0, 30, tzinfo=UTC)


def _row(record_no: int, created_at: datetime) -> dict[str, Any]:
    return {
        "name": "rb-1",
        "ip_address": "203.0.113.5",
        "log": "x",
        "log_size": 2,
        "created_at": created_at,
        "log_format": "unknown",
        "event_type": "unparsed",
        "source_key": "raw/rb-1/x.log",
        "source_sha256": "a" * 64,
        "record_no": record_no,
    }


@pytest.fixture
def aged(mysql_engine: Engine, moto_s3: MotoS3, raw_bucket: str) -> dict[str, Any]:
    """Rows and raw objects 100 days old and 10 days old."""
    old, recent = NOW - timedelta(days=100), NOW - timedelta(days=10)
    with mysql_engine.begin() as connection:
        connection.execute(insert(logs), [_row(i, old) for i in range(250)])
        connection.execute(insert(logs), [_row(1000 + i, recent) for i in range(5)])
    s3 = moto_s3.client()
    keys = {
        "old": [f"raw/rb-1/{old:%Y/%m/%d}/a-{i}.log" for i in range(3)]
        + [f"raw/rb-2/{old:%Y/%m}/01/b.log"],
        "recent": [f"raw/rb-1/{recent:%Y/%m/%d}/c.log", "raw/rb-1/notes/readme.txt"],
    }
    for key in keys["old"] + keys["recent"]:
        s3.put_object(Bucket=raw_bucket, Key=key, Body=b"x\n")
    return keys


def _remaining(mysql_engine: Engine, moto_s3: MotoS3, raw_bucket: str) -> tuple[int, list[str]]:
    with mysql_engine.connect() as connection:
        rows = len(connection.execute(select(logs.c.id)).all())
    listing = moto_s3.client().list_objects_v2(Bucket=raw_bucket).get("Contents", [])
    return rows, sorted(item["Key"] for item in listing)


def test_retention_deletes_what_is_older_in_chunks_once_a_day(
    aged: dict[str, Any], mysql_engine: Engine, moto_s3: MotoS3, raw_bucket: str
) -> None:
    def action() -> str:
        return run_retention(
            rows=LogRows(mysql_engine),
            s3=moto_s3.client(),
            bucket=raw_bucket,
            now=NOW,
            log_days=90,
            raw_days=90,
            chunk=100,
        ).summary()

    claims = TaskClaims(mysql_engine, owner="replica-a")
    replica_a = DailyTask("logs-retention", "02:00", action, claims)
    replica_b = DailyTask("logs-retention", "02:00", action, TaskClaims(mysql_engine, "b"))
    assert replica_a.run_if_due(NOW)
    assert not replica_b.run_if_due(NOW + timedelta(minutes=1))

    rows, keys = _remaining(mysql_engine, moto_s3, raw_bucket)
    assert rows == 5
    assert keys == sorted(aged["recent"])
    with mysql_engine.connect() as connection:
        run = connection.execute(select(task_runs)).one()
    assert (run.claimed_by, run.outcome) == ("replica-a", "ok")
    assert "deleted 250 logs rows" in run.detail
    assert "4 raw objects" in run.detail


def test_retention_periods_of_zero_keep_every_row_and_object(
    aged: dict[str, Any], mysql_engine: Engine, moto_s3: MotoS3, raw_bucket: str
) -> None:
    before = _remaining(mysql_engine, moto_s3, raw_bucket)

    report = run_retention(
        rows=LogRows(mysql_engine),
        s3=moto_s3.client(),
        bucket=raw_bucket,
        now=NOW,
        log_days=0,
        raw_days=0,
        chunk=100,
    )

    assert (report.rows_deleted, report.objects_deleted) == (0, 0)
    assert _remaining(mysql_engine, moto_s3, raw_bucket) == before
    assert before[0] == 255


def test_cleanup_task_by_hand(
    aged: dict[str, Any],
    mysql_database_url: str,
    mysql_engine: Engine,
    moto_s3: MotoS3,
    raw_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {
        "RBR_DATABASE_URL": mysql_database_url,
        "RBR_S3_ENDPOINT_URL": moto_s3.endpoint_url,
        "RBR_S3_BUCKET": raw_bucket,
        "RBR_LOG_RETENTION_DAYS": "30",
        "RBR_RAW_RETENTION_DAYS": "0",
    }
    result = CliRunner().invoke(app, ["run-task", "cleanup"], env=env)
    assert result.exit_code == 0, result.output
    assert "deleted 250 logs rows" in result.output
    assert "raw objects kept forever" in result.output
    rows, keys = _remaining(mysql_engine, moto_s3, raw_bucket)
    assert rows == 5
    assert len(keys) == 6


def test_every_generated_record_parses_to_its_ground_truth() -> None:
    """Thousands of records of every format, hostile content included, cut at odd sizes."""
    generator = LogGenerator(
        77, mix=LogMix(hostile_fraction=0.25), start=datetime(2026, 11, 20, 8, tzinfo=UTC)
    )
    records = generator.generate(6000)
    data = b"".join(r.data for r in records)
    chunks = [data[i : i + 4093] for i in range(0, len(data), 4093)]
    reader = RecordReader(ParseContext(reference_time=datetime(2026, 11, 21, tzinfo=UTC)))
    parsed = list(reader.records(iter_lines(chunks, 1 << 20)))
    assert len(parsed) == len(records)
    assert {r.format.value for r in records} == {"rustbucket", "cowrie", "sshd", "http"}
    assert any(r.hostile is not None for r in records)
    for record, result in zip(records, parsed, strict=True):
        row = {**result.fields, "log": result.raw, "log_size": result.size}
        for column, wanted in expected_row(record).items():
            assert row[column] == wanted, (column, record.data[:200])


def test_mysql_literals_of_datetimes_are_utc_with_microseconds() -> None:
    paris = datetime(2026, 11, 21, 3, 0, 30, 7, tzinfo=ZoneInfo("Europe/Paris"))
    assert _mysql_literal(paris, str) == "'2026-11-21 02:00:30.000007'"
    assert _mysql_literal(NOW, str) == "'2026-11-21 02:00:30.000000'"
    with pytest.raises(ValueError, match="naive"):
        _mysql_literal(NOW.replace(tzinfo=None), str)


def test_rows_round_trip_hostile_text_exactly(mysql_engine: Engine) -> None:
    nasty = "x'); DROP TABLE logs; -- \\' \" \\\\ \x00 \x1a \r\n é 𝄞 %s %(name)s"
    row = _row(0, NOW) | {"log": nasty, "message": nasty, "username": nasty[:255]}
    store = LogRows(mysql_engine)
    full = dict.fromkeys(c.name for c in logs.columns if c.name not in ("id", "created_at")) | row
    assert store.insert([full]) == 1
    assert store.insert([full]) == 0
    with mysql_engine.connect() as connection:
        stored = connection.execute(select(logs.c.log, logs.c.message, logs.c.username)).one()
    assert tuple(stored) == (nasty, nasty, nasty[:255])
