"""Tasks `rbr run-task` runs by hand."""

from __future__ import annotations

from rbr_parser.retention import run_retention
from rbr_parser.settings import ParserSettings
from rbr_parser.store import LogRows
from rbr_runtime.db.engine import make_engine
from rbr_runtime.s3 import make_s3_client
from rbr_runtime.settings import load_settings
from rbr_schemas import utcnow


def cleanup() -> str:
    """Deletes logs rows and raw objects older than their retention periods, now.

    Unlike the daily run it is not claimed in task_runs: an operator asked for it.
    """
    settings = load_settings(ParserSettings)
    engine = make_engine(settings.database_url)
    try:
        report = run_retention(
            rows=LogRows(engine),
            s3=make_s3_client(settings),
            bucket=settings.s3_bucket,
            now=utcnow(),
            log_days=settings.log_retention_days,
            raw_days=settings.raw_retention_days,
            chunk=settings.retention_chunk,
        )
    finally:
        engine.dispose()
    return report.summary()
