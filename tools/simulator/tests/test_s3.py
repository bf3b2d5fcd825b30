"""S3 mode against a real moto server: hourly objects named like the real honeypot's."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from rbr_simulator.fleet import Fleet
from rbr_simulator.s3 import S3Settings, object_key

pytestmark = pytest.mark.s3

FleetFactory = Callable[..., Fleet]
Waiter = Callable[..., Any]


def settings_for(moto_s3: Any, **overrides: Any) -> S3Settings:
    options = {"endpoint_url": moto_s3.endpoint_url, "bucket": moto_s3.create_bucket("sim")}
    options.update(overrides)
    return S3Settings(**options)


def read(moto_s3: Any, bucket: str, key: str) -> bytes:
    body: bytes = moto_s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def test_flush_writes_pending_records_under_the_hourly_key(
    fleet_factory: FleetFactory, moto_s3: Any
) -> None:
    settings = settings_for(moto_s3, prefix="logs/")
    start = datetime(2025, 10, 28, 19, 0, tzinfo=UTC)
    fleet = fleet_factory(
        count=1, bind="ports", s3_fraction=1.0, s3_settings=settings, log_start=start
    )
    info = fleet.buckets[0]
    records = fleet.emit(info.name, 20)

    keys = fleet.flush_to_s3(info.name)

    assert info.s3 is not None
    assert info.s3.bucket_name == settings.bucket
    assert keys == [f"logs/{info.name}/rustbucket.log.2025-10-28-19"]
    assert read(moto_s3, info.s3.bucket_name, keys[0]) == b"".join(r.data for r in records)
    assert fleet.pending(info.name) == []
    assert fleet.served(info.name) == records
    assert fleet.flush_to_s3(info.name) == []


def test_later_flushes_in_the_same_hour_get_an_ordered_counter_suffix(
    fleet_factory: FleetFactory, moto_s3: Any
) -> None:
    start = datetime(2025, 10, 28, 19, 0, tzinfo=UTC)
    settings = settings_for(moto_s3, prefix="")
    fleet = fleet_factory(
        count=1, bind="ports", s3_fraction=1.0, s3_settings=settings, log_start=start
    )
    info = fleet.buckets[0]

    written = []
    for _ in range(3):
        fleet.emit(info.name, 3)
        written += fleet.flush_to_s3(info.name)

    base = f"{info.name}/rustbucket.log.2025-10-28-19"
    assert written == [base, f"{base}.000001", f"{base}.000002"]
    assert sorted(written) == written
    assert fleet.s3_keys(info.name) == written
    listed = moto_s3.client().list_objects_v2(Bucket=settings.bucket, Prefix=f"{info.name}/")
    assert [item["Key"] for item in listed["Contents"]] == written


def test_records_spanning_an_hour_go_to_one_object_per_hour(
    fleet_factory: FleetFactory, moto_s3: Any
) -> None:
    start = datetime(2025, 10, 28, 19, 59, 30, tzinfo=UTC)
    settings = settings_for(moto_s3)
    fleet = fleet_factory(
        count=1, bind="ports", s3_fraction=1.0, s3_settings=settings, log_start=start, seed=2
    )
    info = fleet.buckets[0]
    records = fleet.emit(info.name, 200)

    keys = fleet.flush_to_s3(info.name)

    assert records[-1].timestamp.hour == 20
    assert [key.rsplit(".", 1)[-1] for key in keys] == ["2025-10-28-19", "2025-10-28-20"]
    early = read(moto_s3, str(settings.bucket), keys[0])
    assert early == b"".join(r.data for r in records if r.timestamp.hour == 19)


def test_without_a_shared_bucket_each_honeypot_gets_its_own(
    fleet_factory: FleetFactory, moto_s3: Any
) -> None:
    settings = S3Settings(endpoint_url=moto_s3.endpoint_url)
    fleet = fleet_factory(count=2, bind="ports", s3_fraction=1.0, s3_settings=settings)

    existing = {bucket["Name"] for bucket in moto_s3.client().list_buckets()["Buckets"]}

    for info in fleet.buckets:
        assert info.s3 is not None
        assert info.s3.bucket_name == f"rbr-sim-{info.name.lower()}"
        assert info.s3.bucket_name in existing


def test_background_flush_uploads_on_its_interval(
    fleet_factory: FleetFactory, moto_s3: Any, wait_for: Waiter
) -> None:
    settings = settings_for(moto_s3, flush_interval=0.2)
    fleet = fleet_factory(count=2, bind="ports", s3_fraction=1.0, s3_settings=settings)
    info = fleet.buckets[0]
    records = fleet.emit(info.name, 5)

    keys = wait_for(lambda: fleet.s3_keys(info.name), what="a background upload")

    body = b"".join(read(moto_s3, str(settings.bucket), key) for key in keys)
    assert body == b"".join(record.data for record in records)


def test_flush_is_refused_for_a_bucket_serving_http(fleet_factory: FleetFactory) -> None:
    fleet = fleet_factory(count=1, bind="ports")

    with pytest.raises(ValueError, match="HTTP"):
        fleet.flush_to_s3(fleet.names[0])


@pytest.mark.parametrize(
    ("prefix", "counter", "expected"),
    [
        ("logs/", 0, "logs/rb-1/rustbucket.log.2025-10-28-19"),
        ("logs", 0, "logs/rb-1/rustbucket.log.2025-10-28-19"),
        ("", 2, "rb-1/rustbucket.log.2025-10-28-19.000002"),
        ("a/b/", 1, "a/b/rb-1/rustbucket.log.2025-10-28-19.000001"),
    ],
)
def test_object_key(prefix: str, counter: int, expected: str) -> None:
    assert object_key(prefix, "rb-1", "2025-10-28-19", counter) == expected
