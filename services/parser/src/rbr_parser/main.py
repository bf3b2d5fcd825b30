"""The parser service: `logs.extracted` -> `logs` rows + `logs.parsed`; daily retention.

An hourly task (and start-up) creates the `logs` day partitions ahead (MySQL).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from rbr_parser.parsing import ObjectParser
from rbr_parser.retention import run_retention
from rbr_parser.settings import ParserSettings
from rbr_parser.store import LogRows
from rbr_runtime.db.engine import make_engine
from rbr_runtime.dependencies import (
    broker_dependency,
    database_dependency,
    s3_dependency,
    watch_dependencies,
)
from rbr_runtime.kafka import ConsumerRunner, EventProducer, Inbound, Rejection
from rbr_runtime.s3 import make_s3_client
from rbr_runtime.schedule import DailyTask, PeriodicTask, TaskClaims
from rbr_runtime.service import Service, bootstrap
from rbr_schemas import LOGS_EXTRACTED, utcnow

GROUP_ID = "parser"
RETENTION_TASK = "logs-retention"
PARTITIONS_TASK = "logs-partitions"
PARTITIONS_EVERY_SECONDS = 3600.0


def build_service(settings: ParserSettings) -> Service:
    """Wires the parser: the consumer, the retention task and the health checks."""
    engine = make_engine(settings.database_url, local_infile=True)
    rows = LogRows(engine)
    s3 = make_s3_client(settings)
    producer = EventProducer(settings, source="/rbr/parser")
    service = Service(settings)

    def handle(batch: Sequence[Inbound[Any]]) -> list[Rejection]:
        return parser(batch)

    runner = ConsumerRunner(
        settings, group_id=GROUP_ID, topics=[LOGS_EXTRACTED], handler=handle, producer=producer
    )
    parser = ObjectParser(
        settings, rows=rows, s3=s3, producer=producer, stopping=lambda: runner.stopping
    )

    def create_partitions() -> None:
        rows.create_days_ahead(utcnow().date(), settings.log_partition_days_ahead)

    def retention() -> str:
        return run_retention(
            rows=rows,
            s3=s3,
            bucket=settings.s3_bucket,
            now=utcnow(),
            log_days=settings.log_retention_days,
            raw_days=settings.raw_retention_days,
            chunk=settings.retention_chunk,
        ).summary()

    daily = DailyTask(
        RETENTION_TASK,
        settings.retention_at,
        retention,
        TaskClaims(engine),
        timezone=settings.timezone,
    )
    # Hourly and at start-up: a no-op but for the first run of a day (one read).
    partitions = PeriodicTask(PARTITIONS_TASK, PARTITIONS_EVERY_SECONDS, create_partitions)
    service.add("partitions", partitions.run, partitions.stop)
    service.add("consumer", runner.run, runner.stop)
    service.add("retention", daily.run, daily.stop)
    service.health.add_check("consumer", runner.readiness)
    watch_dependencies(
        service, database_dependency(settings), s3_dependency(settings), broker_dependency(settings)
    )
    service.on_shutdown(parser.close)
    service.on_shutdown(producer.flush)
    service.on_shutdown(engine.dispose)
    return service


def main() -> None:
    """Runs the parser until SIGTERM."""
    settings = bootstrap(ParserSettings, "parser")
    sys.exit(build_service(settings).run())
