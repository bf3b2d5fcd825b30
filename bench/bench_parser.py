"""Parser throughput into MariaDB, against the database's bulk-load limit and older paths.

* parser: the parser parses a raw object (the simulator's default mix) from S3 (moto, in a
  process of its own) into a fresh MariaDB database, the way the service does
  (ObjectParser.parse, logs.parsed on a real broker included): lines per second of the object.
* limit: the same rows, parsed beforehand, loaded the fastest way the database takes them,
  LOAD DATA LOCAL INFILE ... IGNORE (encoding the rows included), in the same batches.
  parser / limit = how close the parser comes to the database (goal >= 0.8).
* server alone: the same LOAD DATA of rows encoded beforehand (informative).
* baseline: the same rows by batched INSERT IGNORE (the path before LOAD DATA, SQLite's).
* ORM per row: how the original registry stored logs, one ORM object added and committed per
  record.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, registry

from bench.figures import Figure
from rbr_parser.formats import ParseContext
from rbr_parser.lines import iter_lines
from rbr_parser.parsing import ObjectParser
from rbr_parser.records import RecordReader
from rbr_parser.settings import ParserSettings
from rbr_parser.store import LogRows, encode_for_load
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_runtime.db.tables import logs
from rbr_runtime.kafka import EventProducer
from rbr_runtime.s3 import make_s3_client
from rbr_schemas import LogsExtracted, LogSource
from rbr_simulator.generator import LogGenerator
from rbr_testing.broker import Broker, free_port
from rbr_testing.mariadb import create_database, drop_database, mysql_url
from rbr_testing.s3 import FAKE_CREDENTIALS
from rbr_testing.waiting import wait_for

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_T = TypeVar("_T")

GOAL_LINES_PER_SECOND = 25_000
GOAL_RATIO_TO_LIMIT = 0.8
ROUNDS = 3


class _LogRow:
    """An ORM-mapped logs row (the original registry's Django-style per-row insert)."""


def _truncate(engine: Engine) -> None:
    """Empties logs and log_objects (the parser then takes the object for a new one)."""
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE TABLE logs"))
        connection.execute(text("TRUNCATE TABLE log_objects"))


def _generate(records: int) -> bytes:
    generator = LogGenerator(2024, start=datetime(2026, 11, 20, tzinfo=UTC))
    return b"".join(r.data for r in generator.generate(records))


def _preparsed(data: bytes, event: LogsExtracted) -> list[dict[str, Any]]:
    reader = RecordReader(ParseContext(reference_time=event.extracted_at))
    rows = []
    created_at = datetime.now(UTC)
    for number, record in enumerate(reader.records(iter_lines([data], 1 << 20))):
        row = dict(record.fields)
        row.update(
            name=event.name,
            ip_address=event.ip_address,
            log=record.raw,
            log_size=record.size,
            source_key=event.s3_key,
            source_sha256=event.sha256,
            record_no=number,
            created_at=created_at,
        )
        rows.append(row)
    return rows


def _moto_process() -> tuple[subprocess.Popen[bytes], str]:
    """Starts moto's S3 server in a process; returns it and its endpoint once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(f"{endpoint}/moto-api/"), timeout=30, message="moto S3 answering")
    return process, endpoint


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1.0)
    except httpx.TransportError:
        return False
    return True


def fake_aws_environment() -> None:
    """Points boto3 at fake credentials: the benchmarks only talk to a local moto server."""
    for name, value in FAKE_CREDENTIALS.items():
        os.environ[name] = value
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


@dataclass
class _Rates:
    """Best lines/s of each path over the rounds (the machine's load varies by the second)."""

    parser: float = 0.0
    limit: float = 0.0
    server: float = 0.0
    baseline: float = 0.0


def _store_object(s3: S3Client, data: bytes) -> LogsExtracted:
    sha = hashlib.sha256(data).hexdigest()
    key = f"raw/bench/2026/11/20/bench-{uuid.uuid4()}.log"
    s3.put_object(
        Bucket="bench-raw", Key=key, Body=data, Metadata={"sha256": sha, "size": str(len(data))}
    )
    return LogsExtracted(
        object_id=str(uuid.uuid4()),
        name="rustbucket-bench",
        ip_address="203.0.113.9",
        s3_bucket="bench-raw",
        s3_key=key,
        size_bytes=len(data),
        sha256=sha,
        source=LogSource.HTTP,
        extracted_at=datetime(2026, 11, 21, tzinfo=UTC),
    )


def _measure(
    parser: ObjectParser, engine: Engine, event: LogsExtracted, data: bytes, batch: int
) -> tuple[_Rates, int]:
    """Runs the parser and the load paths in turn, ROUNDS times; returns the best rates."""
    lines = data.count(b"\n")
    rows = _preparsed(data, event)
    loading = LogRows(engine)
    encoded = [encode_for_load(rows[n : n + batch]) for n in range(0, len(rows), batch)]
    best = _Rates()
    records = 0
    for _ in range(ROUNDS):
        _truncate(engine)
        started = time.perf_counter()
        parsed = parser.parse(event)
        best.parser = max(best.parser, lines / (time.perf_counter() - started))
        assert parsed.rows_inserted == parsed.records
        records = parsed.records
        seconds = _timed_batches(engine, rows, batch, loading.insert)
        best.limit = max(best.limit, lines / seconds)
        seconds = _timed_batches(engine, encoded, 1, lambda one: loading.load(one[0]))
        best.server = max(best.server, lines / seconds)
    inserting = LogRows(engine, bulk_load=False)
    best.baseline = lines / _timed_batches(engine, rows, batch, inserting.insert)
    return best, records


def run(quick: bool) -> list[Figure]:
    fake_aws_environment()
    records = 20_000 if quick else 200_000
    orm_rows = 1_000 if quick else 3_000
    data = _generate(records)
    database = create_database()
    url = mysql_url(database)
    upgrade(url)
    # S3 in a process of its own, as it is for the service (in this one it would take the
    # service's process time to serve the object).
    moto, endpoint = _moto_process()
    broker = Broker()
    broker.start()
    engine = make_engine(url, local_infile=True)
    try:
        settings = ParserSettings(
            kafka_bootstrap=broker.bootstrap,
            database_url=url,
            s3_endpoint_url=endpoint,
            s3_bucket="bench-raw",
        )
        s3 = make_s3_client(settings)
        s3.create_bucket(Bucket="bench-raw")
        producer = EventProducer(settings, source="/rbr/bench")
        parser = ObjectParser(settings, rows=LogRows(engine), s3=s3, producer=producer)
        parser.parse(_store_object(s3, _generate(100)))  # starts the parse process
        event = _store_object(s3, data)
        batch = settings.parser_insert_batch
        rates, parsed_records = _measure(parser, engine, event, data, batch)
        parser.close()
        orm_rate = _orm_rows_per_second(engine, _preparsed(data, event)[:orm_rows])
        producer.flush()
    finally:
        engine.dispose()
        broker.stop()
        moto.kill()
        moto.wait(10)
        drop_database(database)
    return _figures(
        rates, data, records=parsed_records, batch=batch, orm_rate=orm_rate, orm_rows=orm_rows
    )


def _figures(
    rates: _Rates, data: bytes, *, records: int, batch: int, orm_rate: float, orm_rows: int
) -> list[Figure]:
    ratio = rates.parser / rates.limit
    lines = data.count(b"\n")
    return [
        Figure(
            "parser: lines/s into MariaDB (parse + load process)",
            rates.parser,
            "lines/s",
            goal=f">= {GOAL_LINES_PER_SECOND:,}",
            met=rates.parser >= GOAL_LINES_PER_SECOND,
            note=f"{lines:,} lines, {len(data) / 1e6:.0f} MB, {records:,} records, best of 3",
        ),
        Figure(
            "limit: same rows pre-parsed, LOAD DATA LOCAL INFILE",
            rates.limit,
            "lines/s",
            note=f"{batch:,} rows per load, encoding included, best of 3",
        ),
        Figure(
            "parser / limit (issue 16 goal 1)",
            ratio,
            "ratio",
            goal=f">= {GOAL_RATIO_TO_LIMIT}",
            met=ratio >= GOAL_RATIO_TO_LIMIT,
        ),
        Figure(
            "server alone: LOAD DATA of rows encoded beforehand",
            rates.server,
            "lines/s",
            note=f"parser is {rates.parser / rates.server:.2f}x of it",
        ),
        Figure(
            "baseline: same rows, batched INSERT IGNORE (before)",
            rates.baseline,
            "lines/s",
            note=f"limit is {rates.limit / rates.baseline:.2f}x of it",
        ),
        Figure(
            "per-row ORM insert + commit (the original registry's way)",
            orm_rate,
            "rows/s",
            note=f"{orm_rows:,} rows; parser is {rates.parser / orm_rate:.0f}x",
        ),
    ]


def _timed_batches(
    engine: Engine, rows: Sequence[_T], batch: int, insert: Callable[[Sequence[_T]], int]
) -> float:
    """Returns the seconds taken to insert rows, batch by batch, into an empty logs."""
    _truncate(engine)
    started = time.perf_counter()
    inserted = sum(insert(rows[n : n + batch]) for n in range(0, len(rows), batch))
    seconds = time.perf_counter() - started
    assert inserted > 0
    return seconds


def _orm_rows_per_second(engine: Engine, rows: list[dict[str, Any]]) -> float:
    mapper = registry()
    mapper.map_imperatively(_LogRow, logs)
    _truncate(engine)
    started = time.perf_counter()
    with Session(engine) as session:
        for row in rows:
            item = _LogRow()
            for column, value in row.items():
                setattr(item, column, value)
            session.add(item)
            session.commit()
    elapsed = time.perf_counter() - started
    mapper.dispose()
    return len(rows) / elapsed
