"""Retention: deleting `logs` rows and raw objects once they are older than configured.

Runs daily (RBR_RETENTION_AT, once across replicas) and by hand (`rbr run-task cleanup`).
Rows go by whole UTC days: on MySQL whole day partitions are dropped (a moment, whatever
their size), then any older row left (SQLite, or rows of an unpartitioned table) is deleted
in bounded chunks, one transaction each, so the table stays usable meanwhile.
Raw objects are found by the date in their key (`raw/{bucket}/{yyyy}/{mm}/{dd}/...`): whole
expired days are listed and deleted without listing the days that are kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from prometheus_client import Counter

from rbr_parser.store import LogRows
from rbr_runtime.db.partitions import day_start

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

RAW_PREFIX = "raw/"
DELETE_BATCH = 1000
PROGRESS_EVERY_SECONDS = 10.0

ROWS_DELETED = Counter("rbr_retention_rows_deleted_total", "logs rows deleted by retention.")
OBJECTS_DELETED = Counter(
    "rbr_retention_objects_deleted_total", "Raw objects deleted by retention."
)


@dataclass
class RetentionReport:
    """What one retention run deleted."""

    rows_deleted: int = 0
    objects_deleted: int = 0
    row_cutoff: datetime | None = None
    object_cutoff: date | None = None

    def summary(self) -> str:
        """Returns a one-line summary."""
        rows = (
            f"deleted {self.rows_deleted} logs rows created before {self.row_cutoff:%Y-%m-%d %H:%M}"
            if self.row_cutoff
            else "logs rows kept forever (RBR_LOG_RETENTION_DAYS=0)"
        )
        objects = (
            f"{self.objects_deleted} raw objects dated before {self.object_cutoff}"
            if self.object_cutoff
            else "raw objects kept forever (RBR_RAW_RETENTION_DAYS=0)"
        )
        return f"{rows}; {objects}"


def row_cutoff(now: datetime, days: int) -> datetime:
    """Returns the start (UTC) of the oldest day kept: rows created before it go."""
    return day_start((now - timedelta(days=days)).astimezone(UTC).date())


def delete_old_rows(rows: LogRows, cutoff: datetime, chunk: int) -> int:
    """Deletes logs rows created before cutoff; logs progress; returns how many.

    Day partitions wholly before cutoff are dropped first, then the rows left before it are
    deleted by chunks; the objects first parsed before cutoff are forgotten last (a replay of
    one then parses it anew).
    """
    total = rows.drop_days_before(cutoff)
    ROWS_DELETED.inc(total)
    last_report = time.monotonic()
    for deleted in rows.delete_older_than(cutoff, chunk):
        total += deleted
        ROWS_DELETED.inc(deleted)
        if time.monotonic() - last_report > PROGRESS_EVERY_SECONDS:
            log.info("retention: %d logs rows deleted so far", total)
            last_report = time.monotonic()
    rows.delete_objects_older_than(cutoff)
    return total


def _child_prefixes(s3: S3Client, bucket: str, prefix: str) -> Iterator[str]:
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            yield common["Prefix"]


def _number(prefix: str) -> int | None:
    part = prefix.rstrip("/").rsplit("/", 1)[-1]
    return int(part) if part.isdigit() else None


def expired_days(s3: S3Client, bucket: str, cutoff: date) -> Iterator[str]:
    """Yields the `raw/{bucket}/{yyyy}/{mm}/{dd}/` prefixes of days before cutoff."""
    for owner in _child_prefixes(s3, bucket, RAW_PREFIX):
        for year_prefix in _child_prefixes(s3, bucket, owner):
            year = _number(year_prefix)
            if year is None or year > cutoff.year:
                continue
            for month_prefix in _child_prefixes(s3, bucket, year_prefix):
                month = _number(month_prefix)
                if month is None or (year, month) > (cutoff.year, cutoff.month):
                    continue
                for day_prefix in _child_prefixes(s3, bucket, month_prefix):
                    day = _number(day_prefix)
                    if day is not None and _before(year, month, day, cutoff):
                        yield day_prefix


def _before(year: int, month: int, day: int, cutoff: date) -> bool:
    try:
        return date(year, month, day) < cutoff
    except ValueError:
        return False


def delete_prefix(s3: S3Client, bucket: str, prefix: str) -> int:
    """Deletes every object under prefix; returns how many."""
    deleted = 0
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            response = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})  # type: ignore[typeddict-item]
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise RuntimeError(
                    f"S3 refused to delete {len(errors)} object(s) under {prefix}, e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )
            deleted += len(batch)
    return deleted


def delete_old_objects(s3: S3Client, bucket: str, cutoff: date) -> int:
    """Deletes raw objects whose key date is before cutoff; logs progress; returns how many."""
    total = 0
    for prefix in expired_days(s3, bucket, cutoff):
        deleted = delete_prefix(s3, bucket, prefix)
        total += deleted
        OBJECTS_DELETED.inc(deleted)
        log.info("retention: deleted %d raw objects under %s", deleted, prefix)
    return total


def run_retention(
    *,
    rows: LogRows,
    s3: S3Client,
    bucket: str,
    now: datetime,
    log_days: int,
    raw_days: int,
    chunk: int,
) -> RetentionReport:
    """Deletes what is older than the retention periods (a period of 0 keeps everything)."""
    report = RetentionReport()
    if log_days > 0:
        report.row_cutoff = row_cutoff(now, log_days)
        log.info("retention: deleting logs rows created before %s", report.row_cutoff)
        report.rows_deleted = delete_old_rows(rows, report.row_cutoff, chunk)
    if raw_days > 0:
        report.object_cutoff = (now - timedelta(days=raw_days)).date()
        log.info("retention: deleting raw objects dated before %s", report.object_cutoff)
        report.objects_deleted = delete_old_objects(s3, bucket, report.object_cutoff)
    log.info("retention: %s", report.summary())
    return report
