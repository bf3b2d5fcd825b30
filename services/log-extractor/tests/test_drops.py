"""Drop locations: discovery reports, and copying a bucket's drop folders file by file.

The registrar's part (linking folders in `drop_sources`) is played by writing its rows, so
these tests look at the log-extractor alone against moto, the broker and MariaDB.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, insert, select

from rbr_log_extractor.drops import DropScanner, uri_digest
from rbr_log_extractor.locations import parse_location
from rbr_log_extractor.main import source_clients
from rbr_runtime.db.tables import drop_sources, extract_cursors
from rbr_runtime.kafka import EventProducer
from rbr_schemas import (
    DROP_DISCOVERED,
    LOGS_EXTRACTED,
    BucketRegistered,
    BucketState,
    DeliveryMode,
    LogsExtracted,
    utcnow,
)
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events
from rbr_testing.s3 import MotoS3

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
START = (
    "2026-11-21T08:00:00.000201Z  INFO rustbucket: Instance name: {instance}\n"
    "2026-11-21T08:00:00.004700Z  INFO rustbucket::registration: Generated instance name: "
    "{registered}\n"
    "2026-11-21T08:00:00.009000Z  INFO rustbucket: All listeners started. Honeypot is now "
    "running indefinitely.\n"
)


def test_drop_locations_are_parsed_and_refused_clearly() -> None:
    location = parse_location("s3://honeypot-logs/rust/buckets?region=eu-west-1")
    assert (location.bucket, location.prefix, location.region) == (
        "honeypot-logs",
        "rust/buckets/",
        "eu-west-1",
    )
    assert location.folder_uri("rb-x") == "s3://honeypot-logs/rust/buckets/rb-x/"
    assert parse_location("s3://honeypot-logs").uri == "s3://honeypot-logs/"
    for bad, reason in (
        ("https://honeypot-logs/", "s3://"),
        ("s3://Bad_Bucket/", "bucket name"),
        ("s3://honeypot-logs/?region=EU WEST", "region"),
    ):
        with pytest.raises(ValueError, match=reason):
            parse_location(bad)


def record(name: str) -> BucketRegistered:
    now = utcnow()
    return BucketRegistered(
        bucket_id=str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
        name=name,
        state=BucketState.ACTIVE,
        ip_address="203.0.113.9",
        delivery_mode=DeliveryMode.S3_DROP,
        token_ciphertext="unused",
        registered_at=now,
        updated_at=now,
        version=1,
    )


def link(engine: Engine, location: str, folder: str, bucket: BucketRegistered) -> None:
    """Links a folder to a bucket as the registrar does."""
    with engine.begin() as connection:
        connection.execute(
            insert(drop_sources).values(
                uri_sha256=str(uuid.uuid4()).replace("-", ""),
                location=location,
                region="us-east-1",
                folder=folder,
                bucket_id=bucket.bucket_id,
                linked_by="identity",
                linked_at=NOW,
                starts=[],
                first_seen_at=NOW,
                last_seen_at=NOW,
            )
        )


def copies(harness: Any, bootstrap: str, name: str) -> list[bytes]:
    """Returns the content of each raw object announced for a bucket, in order."""
    events: list[LogsExtracted] = [e.data for e in read_events(bootstrap, LOGS_EXTRACTED)]
    return [harness.read(e.s3_key)[0] for e in events if e.name == name]


def test_a_file_across_instance_folders_is_copied_once_and_a_rewrite_whole_again(
    harness_factory: Any, moto_s3: MotoS3, broker: Broker, mysql_engine: Engine
) -> None:
    drop = moto_s3.create_bucket("drop")
    source = moto_s3.client()
    location = f"s3://{drop}/hp/"
    harness = harness_factory()
    honeypot, twin = record("rb-honeypot"), record("rb-twin")
    link(mysql_engine, location, "inst-1", honeypot)
    link(mysql_engine, location, "inst-2", honeypot)
    link(mysql_engine, location, "twin-1", twin)
    day = b"".join(b"2026-11-20T10:%02d:00Z  INFO rustbucket: line %d\n" % (i, i) for i in range(6))

    def put(folder: str, name: str, body: bytes) -> None:
        source.put_object(Bucket=drop, Key=f"hp/{folder}/{name}", Body=body)

    # The first instance uploads day one's file as it grows.
    put("inst-1", "rustbucket.log.2026-11-20", day[:100])
    harness.extractor.extract(honeypot)
    put("inst-1", "rustbucket.log.2026-11-20", day[:150])
    harness.extractor.extract(honeypot)
    # After a restart the new instance uploads the whole file, then its first version is
    # seen again (smaller); another honeypot uploads the very same bytes.
    put("inst-2", "rustbucket.log.2026-11-20", day)
    put("twin-1", "rustbucket.log.2026-11-20", day)
    harness.extractor.extract(honeypot)
    harness.extractor.extract(twin)
    assert b"".join(copies(harness, broker.bootstrap, "rb-honeypot")) == day
    assert copies(harness, broker.bootstrap, "rb-twin") == [day]
    put("inst-1", "rustbucket.log.2026-11-20", day[:100])
    harness.extractor.extract(honeypot)
    assert b"".join(copies(harness, broker.bootstrap, "rb-honeypot")) == day

    # Rewritten with other content: copied whole again, and reported.
    reported = REGISTRY.get_sample_value("rbr_extractor_rewritten_total") or 0.0
    rewritten = b"2026-11-20T23:59:00Z  INFO rustbucket: something else entirely\n"
    put("inst-2", "rustbucket.log.2026-11-20", rewritten)
    harness.extractor.extract(honeypot)
    assert copies(harness, broker.bootstrap, "rb-honeypot")[-1] == rewritten
    assert REGISTRY.get_sample_value("rbr_extractor_rewritten_total") == reported + 1

    # The freshness the poller judges: the newest upload the listing showed, and when.
    with mysql_engine.connect() as connection:
        row = connection.execute(
            select(extract_cursors).where(extract_cursors.c.name == "rb-honeypot")
        ).one()
    newest = source.head_object(Bucket=drop, Key="hp/inst-2/rustbucket.log.2026-11-20")
    assert row.last_upload_at >= newest["LastModified"].replace(microsecond=0)
    assert row.uploads_checked_at is not None


def test_discovery_reports_new_changed_and_unclaimed_folders_with_their_identity(
    settings_factory: Any, moto_s3: MotoS3, broker: Broker, mysql_engine: Engine
) -> None:
    drop = moto_s3.create_bucket("drop")
    source = moto_s3.client()
    settings = settings_factory(drop_locations=f"s3://{drop}/hp/")
    start = START.format(instance="inst-1", registered="rb-registered")
    source.put_object(Bucket=drop, Key="hp/inst-1/rustbucket.log.2026-11-20", Body=start.encode())
    source.put_object(Bucket=drop, Key="hp/inst-2/rustbucket.log.2026-11-20", Body=b"x\n")
    source.put_object(Bucket=drop, Key="hp/loose-file.log", Body=b"not in a folder\n")
    source.put_object(Bucket=drop, Key="hp/evil\x1b[31m/rustbucket.log.x", Body=b"x\n")
    producer = EventProducer(settings, source="/rbr/log-extractor")
    scanner = DropScanner(
        settings, engine=mysql_engine, source_s3=source_clients(settings), producer=producer
    )
    try:
        assert scanner.scan() == 2
        reports = {e.data.folder: e.data for e in read_events(broker.bootstrap, DROP_DISCOVERED)}
        assert set(reports) == {"inst-1", "inst-2"}
        [found] = reports["inst-1"].starts
        assert (found.instance_name, found.registered_name) == ("inst-1", "rb-registered")
        assert reports["inst-1"].uri == f"s3://{drop}/hp/inst-1/"
        # The registrar links inst-1; the next scan reports only the unclaimed folder.
        link(mysql_engine, f"s3://{drop}/hp/", "inst-1", record("rb-registered"))
        with mysql_engine.begin() as connection:
            connection.execute(
                drop_sources.update()
                .where(drop_sources.c.folder == "inst-1")
                .values(
                    uri_sha256=uri_digest(f"s3://{drop}/hp/inst-1/"),
                    objects=1,
                    size_bytes=len(start),
                    newest_upload_at=reports["inst-1"].newest_upload_at,
                )
            )
        assert scanner.scan() == 1
    finally:
        producer.flush()
