"""Fixtures of the parser's integration tests: settings on the real broker, MariaDB and S3."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from rbr_parser.settings import ParserSettings
from rbr_runtime.kafka import EventProducer
from rbr_runtime.settings import CommonSettings
from rbr_schemas import LOGS_EXTRACTED, LogsExtracted, LogSource
from rbr_testing.broker import Broker
from rbr_testing.s3 import MotoS3

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

EXTRACTED_AT = datetime(2025, 10, 29, 8, 0, tzinfo=UTC)


@pytest.fixture
def raw_bucket(moto_s3: MotoS3) -> str:
    return moto_s3.create_bucket("raw")


SettingsFactory = Callable[..., ParserSettings]


@pytest.fixture
def settings_factory(
    broker: Broker, mysql_database_url: str, moto_s3: MotoS3, raw_bucket: str
) -> SettingsFactory:
    """Returns parser settings for this test's broker, database and bucket, with overrides."""

    def make(**overrides: object) -> ParserSettings:
        url = str(overrides.pop("database_url", mysql_database_url))
        return parser_settings(broker.bootstrap, url, moto_s3, raw_bucket, **overrides)

    return make


@pytest.fixture
def settings(settings_factory: SettingsFactory) -> ParserSettings:
    return settings_factory()


def parser_settings(
    bootstrap: str, database_url: str, moto_s3: MotoS3, bucket: str, **overrides: object
) -> ParserSettings:
    """Returns parser settings for tests: quick group joins and retries, retention off."""
    values: dict[str, object] = {
        "kafka_bootstrap": bootstrap,
        "kafka_session_timeout_ms": 2000,
        "database_url": database_url,
        "s3_endpoint_url": moto_s3.endpoint_url,
        "s3_bucket": bucket,
        "http_port": 0,
        "consumer_batch_wait": 0.2,
        "retry_initial_backoff": 0.05,
        "retry_max_backoff": 0.5,
        "log_retention_days": 0,
        "raw_retention_days": 0,
        "parser_insert_batch": 500,
    }
    values.update(overrides)
    return ParserSettings(**values)  # type: ignore[arg-type]


class RawObjects:
    """Stores raw objects as the log-extractor does and announces them."""

    def __init__(self, s3: S3Client, bucket: str, bootstrap: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.bootstrap = bootstrap

    def store(self, name: str, data: bytes, *, metadata: bool = True) -> LogsExtracted:
        """Stores an object; returns its logs.extracted data."""
        return store_object(self.s3, self.bucket, name, data, metadata=metadata)

    def publish(self, *events: LogsExtracted) -> None:
        """Publishes logs.extracted events."""
        publish(self.bootstrap, *events)


@pytest.fixture
def raw_objects(moto_s3: MotoS3, raw_bucket: str, broker: Broker) -> RawObjects:
    return RawObjects(moto_s3.client(), raw_bucket, broker.bootstrap)


def store_object(
    s3: S3Client, bucket: str, name: str, data: bytes, *, metadata: bool = True
) -> LogsExtracted:
    """Stores a raw object as the log-extractor does and returns its logs.extracted data."""
    object_id = str(uuid.uuid4())
    sha256 = hashlib.sha256(data).hexdigest()
    key = f"raw/{name}/2025/10/29/20251029T080000Z-{object_id}.log"
    extra = {"sha256": sha256, "size": str(len(data)), "source": "http"} if metadata else {}
    s3.put_object(Bucket=bucket, Key=key, Body=data, Metadata=extra)
    return LogsExtracted(
        object_id=object_id,
        name=name,
        ip_address="203.0.113.5",
        s3_bucket=bucket,
        s3_key=key,
        size_bytes=len(data),
        sha256=sha256,
        source=LogSource.HTTP,
        extracted_at=EXTRACTED_AT,
    )


def publish(bootstrap: str, *events: LogsExtracted) -> None:
    """Publishes logs.extracted events (ids derived from the object, as the extractor does)."""
    producer = EventProducer(CommonSettings(kafka_bootstrap=bootstrap), source="/rbr/test")
    for event in events:
        producer.send(LOGS_EXTRACTED, event.name, event, subject=event.name)
    producer.flush()
