"""End to end: simulated buckets -> log-extractor -> S3 (moto) -> parser -> `logs` rows.

Both services run whole (consumer groups, scheduler, health) against the real broker and
MariaDB; one bucket serves its logs over HTTP, the other writes them to its own S3 bucket.
Every row is compared with the simulator's ground truth.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from rbr_log_extractor.main import build_service as build_extractor
from rbr_parser.main import build_service as build_parser
from rbr_parser.settings import ParserSettings
from rbr_runtime.db.tables import logs
from rbr_schemas import LOGS_EXTRACTED, LOGS_PARSED
from rbr_simulator.records import LogMix
from rbr_simulator.s3 import S3Settings
from rbr_testing.broker import Broker
from rbr_testing.buckets import publish_registrations, registration
from rbr_testing.kafka import read_events
from rbr_testing.log_truth import mismatches
from rbr_testing.s3 import MotoS3
from rbr_testing.services import running

# Recent: classic syslog lines carry no year, which the parser takes from the extraction.
LOG_START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def rows_of_bucket(engine: Engine, name: str, source_order: dict[str, str]) -> list[Any]:
    with engine.connect() as connection:
        rows = [
            dict(row._mapping)
            for row in connection.execute(select(logs).where(logs.c.name == name))
        ]
    return sorted(rows, key=lambda r: (source_order.get(r["source_key"], ""), r["record_no"]))


def test_buckets_logs_become_exactly_the_expected_rows(
    fleet_factory: Any,
    settings_factory: Any,
    mysql_database_url: str,
    mysql_engine: Engine,
    moto_s3: MotoS3,
    raw_bucket: str,
    broker: Broker,
) -> None:
    fleet = fleet_factory(
        count=2,
        bind="ports",
        seed=9,
        log_start=LOG_START,
        mix=LogMix(hostile_fraction=0.2, long_line_chars=3000),
        s3_fraction=0.5,
        s3_settings=S3Settings(endpoint_url=moto_s3.endpoint_url, prefix="logs/"),
    )
    [http_bucket] = [b for b in fleet.buckets if b.s3 is None]
    [s3_bucket] = [b for b in fleet.buckets if b.s3 is not None]
    http_records = fleet.emit(http_bucket.name, 400)
    s3_records = fleet.emit(s3_bucket.name, 400)
    source_objects = fleet.flush_to_s3(s3_bucket.name)
    publish_registrations(broker.bootstrap, [registration(b) for b in fleet.buckets])

    extractor_settings = settings_factory(bucket_ca_file=str(fleet.ca_file))
    parser_settings = ParserSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_session_timeout_ms=2000,
        database_url=mysql_database_url,
        s3_endpoint_url=moto_s3.endpoint_url,
        s3_bucket=raw_bucket,
        http_port=0,
        consumer_batch_wait=0.2,
        log_retention_days=0,
        raw_retention_days=0,
    )
    objects = 1 + len(source_objects)
    with running(build_extractor(extractor_settings)), running(build_parser(parser_settings)):
        parsed = [e.data for e in read_events(broker.bootstrap, LOGS_PARSED, at_least=objects)]
    extracted = [e.data for e in read_events(broker.bootstrap, LOGS_EXTRACTED)]

    assert len(extracted) == objects
    assert sum(p.rows_inserted for p in parsed) == 800
    assert len(fleet.requests(http_bucket.name, "/extract_logs")) == 1  # once in this slot
    source_order = {e.s3_key: e.source_ref or "" for e in extracted}
    http_rows = rows_of_bucket(mysql_engine, http_bucket.name, source_order)
    s3_rows = rows_of_bucket(mysql_engine, s3_bucket.name, source_order)
    assert mismatches(http_rows, http_records) == []
    assert mismatches(s3_rows, s3_records) == []
    assert {r["ip_address"] for r in http_rows} == {http_bucket.ip}
