"""Parser throughput into MariaDB, against a direct-insert baseline and per-row ORM inserts.

* parser: one process parses a raw object (the simulator's default mix) from S3 (moto) into
  a fresh MariaDB database, the way the service does (ObjectParser.parse, logs.parsed on a
  real broker included): lines per second of the object.
* baseline: the same rows, parsed beforehand, inserted with the same batched INSERT IGNORE:
  what the database alone allows. parser / baseline = the parser's own overhead (goal >= 0.5).
* ORM per row: how the original registry stored logs, one ORM object added and committed per
  record.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from moto.server import ThreadedMotoServer
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, registry

from bench.figures import Figure
from rbr_parser.formats import ParseContext
from rbr_parser.parsing import ObjectParser
from rbr_parser.lines import iter_lines
from rbr_parser.records import RecordReader
from rbr_parser.settings import ParserSettings
from rbr_parser.store import LogRows
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_runtime.db.tables import logs
from rbr_runtime.kafka import EventProducer
from rbr_runtime.s3 import make_s3_client
from rbr_schemas import LogsExtracted, LogSource
from rbr_simulator.generator import LogGenerator
from rbr_testing.broker import Broker
from rbr_testing.mariadb import create_database, drop_database, mysql_url
from rbr_testing.s3 import FAKE_CREDENTIALS

GOAL_LINES_PER_SECOND = 25_000
GOAL_RATIO = 0.5


class _LogRow:
    """An ORM-mapped logs row (the original registry's Django-style per-row insert)."""


def _truncate(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE TABLE logs"))


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


def fake_aws_environment() -> None:
    """Points boto3 at fake credentials: the benchmarks only talk to a local moto server."""
    for name, value in FAKE_CREDENTIALS.items():
        os.environ[name] = value
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


def run(quick: bool) -> list[Figure]:
    fake_aws_environment()
    records = 20_000 if quick else 200_000
    orm_rows = 1_000 if quick else 3_000
    data = _generate(records)
    lines = data.count(b"\n")
    database = create_database()
    url = mysql_url(database)
    upgrade(url)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    broker = Broker()
    broker.start()
    engine = make_engine(url)
    try:
        host, port = moto.get_host_and_port()
        settings = ParserSettings(
            kafka_bootstrap=broker.bootstrap,
            database_url=url,
            s3_endpoint_url=f"http://{host}:{port}",
            s3_bucket="bench-raw",
        )
        s3 = make_s3_client(settings)
        s3.create_bucket(Bucket="bench-raw")
        sha = hashlib.sha256(data).hexdigest()
        key = f"raw/bench/2026/11/20/bench-{uuid.uuid4()}.log"
        s3.put_object(
            Bucket="bench-raw", Key=key, Body=data, Metadata={"sha256": sha, "size": str(len(data))}
        )
        event = LogsExtracted(
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
        producer = EventProducer(settings, source="/rbr/bench")
        parser = ObjectParser(settings, rows=LogRows(engine), s3=s3, producer=producer)

        started = time.perf_counter()
        parsed = parser.parse(event)
        parser_seconds = time.perf_counter() - started
        assert parsed.rows_inserted == parsed.records
        parser_rate = lines / parser_seconds

        rows = _preparsed(data, event)
        _truncate(engine)
        store = LogRows(engine)
        started = time.perf_counter()
        for start in range(0, len(rows), settings.parser_insert_batch):
            store.insert(rows[start : start + settings.parser_insert_batch])
        baseline_seconds = time.perf_counter() - started
        baseline_rate = lines / baseline_seconds

        orm_rate = _orm_rows_per_second(engine, rows[:orm_rows])
        producer.flush()
    finally:
        engine.dispose()
        broker.stop()
        moto.stop()
        drop_database(database)

    ratio = parser_rate / baseline_rate
    mb = len(data) / 1e6
    return [
        Figure(
            "parser: lines/s into MariaDB (one process)",
            parser_rate,
            "lines/s",
            goal=f">= {GOAL_LINES_PER_SECOND:,}",
            met=parser_rate >= GOAL_LINES_PER_SECOND,
            note=f"{lines:,} lines, {mb:.0f} MB, {parsed.records:,} records",
        ),
        Figure(
            "baseline: same rows pre-parsed, batched INSERT IGNORE",
            baseline_rate,
            "lines/s",
            note=f"{len(rows):,} rows",
        ),
        Figure(
            "parser / baseline (parser overhead)",
            ratio,
            "ratio",
            goal=f">= {GOAL_RATIO}",
            met=ratio >= GOAL_RATIO,
        ),
        Figure(
            "per-row ORM insert + commit (the original registry's way)",
            orm_rate,
            "rows/s",
            note=f"{orm_rows:,} rows; parser is {parser_rate / orm_rate:.0f}x",
        ),
    ]


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
