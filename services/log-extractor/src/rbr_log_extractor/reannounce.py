"""`rbr topics announce-objects`: finding raw objects never parsed, to announce them again.

For when `logs.extracted` lost events the broker had confirmed; see the README's Operations.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine, select

from rbr_log_extractor.storage import RAW_PREFIX, head_metadata
from rbr_runtime.db.tables import logs
from rbr_schemas import BucketRegistered, LogsExtracted, LogSource

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawObject:
    """A raw object found under `raw/`."""

    key: str
    name: str
    object_id: str
    stored_at: datetime


def parse_raw_key(key: str) -> tuple[str, str] | None:
    """Returns (bucket name, object id) of `raw/{name}/{yyyy}/{mm}/{dd}/{time}-{id}.log`."""
    if not key.startswith(RAW_PREFIX) or not key.endswith(".log"):
        return None
    parts = key[len(RAW_PREFIX) :].split("/")
    if len(parts) != 5 or "-" not in parts[4]:
        return None
    _, object_id = parts[4][: -len(".log")].split("-", 1)
    return (parts[0], object_id) if parts[0] and object_id else None


def raw_objects(
    s3: S3Client, bucket: str, since: datetime, before: datetime
) -> Iterator[RawObject]:
    """Yields the raw objects last written in [since, before)."""
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=RAW_PREFIX):
        for item in page.get("Contents", []):
            parsed = parse_raw_key(item["Key"])
            if parsed is None or not since <= item["LastModified"] < before:
                continue
            yield RawObject(item["Key"], parsed[0], parsed[1], item["LastModified"])


@dataclass
class AnnounceReport:
    """What a search for unannounced objects found (and sent, unless a dry run)."""

    checked: int = 0
    parsed: int = 0
    unregistered: list[str] = field(default_factory=list)
    """Keys of unparsed objects of buckets no longer registered: left alone."""
    unparsed: list[LogsExtracted] = field(default_factory=list)
    """The events of the objects the parser never got."""


def find_unparsed(
    s3: S3Client,
    bucket: str,
    engine: Engine,
    registrations: dict[str, BucketRegistered],
    objects: Iterator[RawObject],
) -> AnnounceReport:
    """Checks each object against `logs`; returns the events of those never parsed."""
    report = AnnounceReport()
    for item in objects:
        report.checked += 1
        size, metadata = head_metadata(s3, bucket, item.key)
        sha256 = metadata.get("sha256")
        if sha256 is None:
            log.warning("raw object %s has no sha256 metadata; skipped", item.key)
            continue
        if _parsed(engine, sha256, item.name):
            report.parsed += 1
            continue
        registration = registrations.get(item.name)
        if registration is None:
            report.unregistered.append(item.key)
            continue
        report.unparsed.append(
            LogsExtracted(
                object_id=item.object_id,
                name=item.name,
                ip_address=registration.ip_address,
                s3_bucket=bucket,
                s3_key=item.key,
                size_bytes=int(metadata.get("size", size)),
                sha256=sha256,
                source=LogSource(metadata.get("source", LogSource.HTTP.value)),
                extracted_at=item.stored_at,
            )
        )
    return report


def _parsed(engine: Engine, sha256: str, name: str) -> bool:
    # The unique key of `logs` starts with (source_sha256, name): an indexed look-up.
    query = select(logs.c.id).where(logs.c.source_sha256 == sha256, logs.c.name == name)
    with engine.connect() as connection:
        return connection.execute(query.limit(1)).first() is not None
