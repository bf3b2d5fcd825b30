"""Writing a bucket's logs to its own S3 bucket, like the real honeypot's hourly uploads.

Keys are `{prefix}{name}/rustbucket.log.YYYY-MM-DD-HH` (the hour of the records inside).
When a bucket flushes more than once in an hour, later objects of that hour get a counter
suffix, `.000001`, `.000002`, ... so keys never collide and sort in the order written.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from rbr_simulator.records import LogRecord

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DEFAULT_PREFIX = "logs/"


@dataclass(frozen=True, slots=True)
class S3Settings:
    """Where buckets in S3 mode write their logs.

    Attributes:
        endpoint_url: S3 endpoint (e.g. a moto server); None for AWS itself.
        region: Region of the S3 buckets.
        bucket: One S3 bucket shared by all honeypots (keys differ by name); None gives each
            honeypot its own S3 bucket, `rbr-sim-<name in lower case>`.
        prefix: Key prefix.
        flush_interval: Seconds between automatic flushes; None flushes only on request.
    """

    endpoint_url: str | None = None
    region: str = "us-east-1"
    bucket: str | None = None
    prefix: str = DEFAULT_PREFIX
    flush_interval: float | None = None

    def bucket_for(self, name: str) -> str:
        """Returns the S3 bucket the honeypot called `name` writes to."""
        return self.bucket or f"rbr-sim-{name.lower()}"


@dataclass(frozen=True, slots=True)
class S3Object:
    """One object to write: its key and the records it holds."""

    key: str
    records: tuple[LogRecord, ...]

    @property
    def body(self) -> bytes:
        """Returns the object's content: the records' bytes in order."""
        return b"".join(record.data for record in self.records)

    @property
    def last_seq(self) -> int:
        """Returns the sequence number of the last record inside."""
        return self.records[-1].seq


def hour_label(moment: datetime) -> str:
    """Returns the hour suffix of a rolling log file, `YYYY-MM-DD-HH`."""
    return f"{moment:%Y-%m-%d-%H}"


def object_key(prefix: str, name: str, hour: str, counter: int) -> str:
    """Returns the key of a honeypot's log object.

    Args:
        prefix: Key prefix ("" for none; a missing trailing slash is added).
        name: The honeypot's name.
        hour: `YYYY-MM-DD-HH` of the records inside.
        counter: 0 for the first object of that hour, then 1, 2, ...
    """
    folder = f"{prefix.rstrip('/')}/" if prefix.strip("/") else ""
    key = f"{folder}{name}/rustbucket.log.{hour}"
    return key if counter == 0 else f"{key}.{counter:06d}"


def plan_objects(
    records: Sequence[LogRecord], *, prefix: str, name: str, hour_counts: dict[str, int]
) -> list[S3Object]:
    """Groups records by hour into objects and names them; updates `hour_counts`.

    Args:
        records: Pending records, in sequence order.
        prefix: Key prefix.
        name: The honeypot's name.
        hour_counts: Objects already written per hour (updated in place).
    """
    objects = []
    for hour, group in itertools.groupby(records, key=lambda record: hour_label(record.timestamp)):
        counter = hour_counts.get(hour, 0)
        hour_counts[hour] = counter + 1
        objects.append(S3Object(key=object_key(prefix, name, hour, counter), records=tuple(group)))
    return objects


def make_client(settings: S3Settings) -> S3Client:
    """Returns a boto3 S3 client for the settings (credentials from the environment).

    With an endpoint override (moto, MinIO) path-style addressing is used: such servers
    rarely resolve virtual-hosted bucket names.
    """
    config = Config(
        region_name=settings.region,
        s3={"addressing_style": "path" if settings.endpoint_url else "auto"},
        retries={"max_attempts": 3, "mode": "standard"},
    )
    client: S3Client = boto3.session.Session().client(
        "s3", endpoint_url=settings.endpoint_url, config=config
    )
    return client


def ensure_bucket(client: S3Client, bucket: str, region: str) -> None:
    """Creates the S3 bucket unless it exists already."""
    existing = {entry["Name"] for entry in client.list_buckets().get("Buckets", [])}
    if bucket in existing:
        return
    if region == "us-east-1":
        client.create_bucket(Bucket=bucket)
        return
    client.create_bucket(
        Bucket=bucket,
        CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
    )


def put_object(client: S3Client, bucket: str, s3_object: S3Object) -> None:
    """Writes one log object."""
    client.put_object(
        Bucket=bucket, Key=s3_object.key, Body=s3_object.body, ContentType="text/plain"
    )
