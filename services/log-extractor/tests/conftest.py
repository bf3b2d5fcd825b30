"""Fixtures of the log-extractor's tests: settings for the real broker, MariaDB, S3, fleet."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine

from rbr_log_extractor.extractor import Extractor
from rbr_log_extractor.main import make_extractor
from rbr_log_extractor.repository import ExtractState
from rbr_log_extractor.settings import ExtractorSettings
from rbr_testing.broker import Broker
from rbr_testing.buckets import TEST_SECRET_KEY
from rbr_testing.registry import SIMULATED_BUCKET_PORTS
from rbr_testing.s3 import MotoS3

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SettingsFactory = Callable[..., ExtractorSettings]


@pytest.fixture
def raw_bucket(moto_s3: MotoS3) -> str:
    return moto_s3.create_bucket("raw")


@pytest.fixture
def settings_factory(
    broker: Broker, mysql_database_url: str, moto_s3: MotoS3, raw_bucket: str
) -> SettingsFactory:
    """Returns extractor settings for this test's broker, database and bucket."""

    def make(**overrides: object) -> ExtractorSettings:
        values: dict[str, object] = {
            "kafka_bootstrap": broker.bootstrap,
            "kafka_session_timeout_ms": 2000,
            "database_url": mysql_database_url,
            "s3_endpoint_url": moto_s3.endpoint_url,
            "s3_bucket": raw_bucket,
            "secret_key": TEST_SECRET_KEY,
            "allowed_bucket_networks": "127.0.0.0/8",
            "allowed_bucket_ports": SIMULATED_BUCKET_PORTS,
            "http_port": 0,
            "extract_tick": 0.2,
            "extract_part_bytes": 5 * 1024 * 1024,
        }
        values.update(overrides)
        return ExtractorSettings(**values)  # type: ignore[arg-type]

    return make


@dataclass
class Harness:
    """An extractor wired to the test's broker, database and S3, without the scheduler."""

    settings: ExtractorSettings
    extractor: Extractor
    state: ExtractState
    s3: S3Client

    def keys(self, prefix: str = "raw/") -> list[str]:
        """Returns the keys under prefix in the registry's bucket."""
        listing = self.s3.list_objects_v2(Bucket=self.settings.s3_bucket, Prefix=prefix)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def read(self, key: str) -> tuple[bytes, dict[str, str]]:
        """Returns an object's content and metadata."""
        response = self.s3.get_object(Bucket=self.settings.s3_bucket, Key=key)
        return response["Body"].read(), response["Metadata"]


HarnessFactory = Callable[..., Harness]


@pytest.fixture
def harness_factory(
    settings_factory: SettingsFactory, mysql_engine: Engine
) -> Iterator[HarnessFactory]:
    made: list[Harness] = []

    def make(**overrides: object) -> Harness:
        settings = settings_factory(**overrides)
        state = ExtractState(mysql_engine, "test-worker")
        extractor, s3 = make_extractor(settings, state)
        harness = Harness(settings, extractor, state, s3)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.extractor.close()
