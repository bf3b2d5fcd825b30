"""Extracting simulated buckets' logs into S3 (moto): HTTP pulls and S3-to-S3 copies."""

from __future__ import annotations

import gzip
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, update
from typer.testing import CliRunner

from rbr_cli.main import app
from rbr_log_extractor.copies import source_prefix
from rbr_log_extractor.extractor import Extractor
from rbr_log_extractor.outcome import ExtractionError
from rbr_log_extractor.pulls import valid_cursor
from rbr_log_extractor.scheduler import ExtractScheduler, extract_slots
from rbr_log_extractor.storage import RawObjectWriter, TooLarge, raw_key
from rbr_log_extractor.store import ExtractState
from rbr_parser.main import build_service as build_parser
from rbr_parser.retention import run_retention
from rbr_parser.settings import ParserSettings
from rbr_parser.store import LogRows
from rbr_runtime.buckets import BucketClients, vault
from rbr_runtime.db.tables import extract_cursors, logs, s3_copy_ledger
from rbr_runtime.kafka import EventProducer
from rbr_runtime.schedule import FleetSlots
from rbr_schemas import (
    LOGS_EXTRACTED,
    LOGS_PARSED,
    BucketRegistered,
    LogsExtracted,
    LogSource,
    utcnow,
)
from rbr_simulator.s3 import S3Settings
from rbr_testing.broker import Broker, free_port
from rbr_testing.buckets import TEST_SECRET_KEY, publish_registrations, registration
from rbr_testing.kafka import read_events
from rbr_testing.log_truth import mismatches
from rbr_testing.registry import SIMULATED_BUCKET_PORTS
from rbr_testing.s3 import MotoS3
from rbr_testing.services import running
from rbr_testing.waiting import wait_for

MIB = 1024 * 1024
LOG_START = datetime(2025, 10, 28, 19, 0, tzinfo=UTC)


def extracted(bootstrap: str, at_least: int = 0) -> list[LogsExtracted]:
    return [e.data for e in read_events(bootstrap, LOGS_EXTRACTED, at_least=at_least)]


def cursor_row(engine: Engine, name: str) -> Any:
    with engine.connect() as connection:
        return connection.execute(
            select(extract_cursors).where(extract_cursors.c.name == name)
        ).one()


# -- pure logic ---------------------------------------------------------------------------


def test_schedule_keys_and_cursor_rules() -> None:
    interval = 900.0
    moment = datetime(2026, 11, 21, 9, 7, tzinfo=UTC)
    slot = int(moment.timestamp() // interval)  # 09:00 to 09:15
    # Bucket "b" is due 218.46 s into every slot (a hash of its name): 09:03:38.46 in this
    # one. Before that, the slot it should have been extracted for is the one before.
    schedule = FleetSlots(interval, 1.0, catch_up=True)
    assert schedule.owed("b", moment) == slot
    assert schedule.owed("b", moment.replace(minute=3, second=38)) == slot - 1
    assert schedule.owed("b", moment.replace(minute=3, second=39)) == slot
    assert schedule.owed("b", moment.replace(minute=0)) == slot - 1
    assert schedule.owed("b", moment + timedelta(seconds=interval)) == slot + 1
    # Spread 0: every bucket is due at the start of the slot.
    assert FleetSlots(interval, 0.0, catch_up=True).owed("b", moment.replace(minute=0)) == slot
    assert source_prefix("logs/", "rb-1") == "logs/rb-1/"
    assert source_prefix("logs", "rb-1") == "logs/rb-1/"
    assert source_prefix("", "rb-1") == "rb-1/"
    assert valid_cursor("1234") == "1234"
    assert valid_cursor("bad cursor\r\nX-Evil: 1") is None
    assert valid_cursor("x" * 300) is None
    assert raw_key("rb-1", moment, "id-1") == "raw/rb-1/2026/11/21/20261121T090700Z-id-1.log"


# -- storing raw objects --------------------------------------------------------------------


def test_raw_object_writer_small_large_and_aborted(moto_s3: MotoS3, raw_bucket: str) -> None:
    s3 = moto_s3.client()

    def writer(key: str, max_bytes: int = 100 * MIB) -> RawObjectWriter:
        return RawObjectWriter(
            s3,
            raw_bucket,
            final_key=f"raw/b/{key}.log",
            staging=f"staging/b/{key}.log",
            part_bytes=5 * MIB,
            max_bytes=max_bytes,
            source="http",
        )

    small = writer("small")
    small.write(b"hello\n")
    assert small.finish() is not None
    large = writer("large")
    payload = bytes(range(256)) * (12 * MIB // 256 + 7)
    for start in range(0, len(payload), MIB):
        large.write(payload[start : start + MIB])
    stored = large.finish()
    assert stored is not None
    assert stored.size == len(payload)
    head = s3.head_object(Bucket=raw_bucket, Key="raw/b/large.log")
    assert head["Metadata"] == {
        "sha256": stored.sha256,
        "size": str(len(payload)),
        "source": "http",
    }
    assert s3.get_object(Bucket=raw_bucket, Key="raw/b/large.log")["Body"].read() == payload

    assert writer("empty").finish() is None
    aborted = writer("aborted", max_bytes=7 * MIB)
    for _ in range(7):
        aborted.write(b"x" * MIB)
    with pytest.raises(TooLarge):
        aborted.write(b"x")
    aborted.abort()
    keys = [i["Key"] for i in s3.list_objects_v2(Bucket=raw_bucket).get("Contents", [])]
    assert sorted(keys) == ["raw/b/large.log", "raw/b/small.log"]
    assert s3.list_multipart_uploads(Bucket=raw_bucket).get("Uploads", []) == []


# -- HTTP pulls -----------------------------------------------------------------------------


def test_http_pull_with_cursor_empty_pulls_and_retries(
    fleet_factory: Any, harness_factory: Any, mysql_engine: Engine, broker: Broker
) -> None:
    fleet = fleet_factory(count=2, bind="ports", seed=5, log_start=LOG_START)
    harness = harness_factory(bucket_ca_file=str(fleet.ca_file))
    busy, quiet = (registration(info) for info in fleet.buckets)
    emitted = fleet.emit(busy.name, 10)

    outcome = harness.extractor.extract(busy)
    assert outcome.objects == 1
    [key] = harness.keys()
    content, metadata = harness.read(key)
    assert content == b"".join(r.data for r in emitted)
    assert metadata["size"] == str(len(content))
    assert cursor_row(mysql_engine, busy.name).http_cursor == str(emitted[-1].seq)
    [event] = extracted(broker.bootstrap, at_least=1)
    assert (event.s3_key, event.sha256, event.source) == (key, metadata["sha256"], LogSource.HTTP)
    assert event.size_bytes == len(content)
    assert cursor_row(mysql_engine, busy.name).pending_event is None

    # Nothing new, and a bucket with nothing at all: nothing stored, nothing announced.
    assert harness.extractor.extract(busy).objects == 0
    assert harness.extractor.extract(quiet).objects == 0
    assert len(harness.keys()) == 1

    # A failed transfer (the bucket errs, then sends more than allowed) is never announced;
    # the cursor stays, so the next cycle gets the same records again.
    more = fleet.emit(busy.name, 30)
    fleet.set_mode(busy.name, "error")
    with pytest.raises(ExtractionError, match="HTTP 500"):
        harness.extractor.extract(busy)
    fleet.set_mode(busy.name, "normal")
    too_small = len(b"".join(r.data for r in more)) - 1
    limited = harness_factory(bucket_ca_file=str(fleet.ca_file), extract_max_bytes=too_small)
    with pytest.raises(ExtractionError, match="TooLarge"):
        limited.extractor.extract(busy)
    assert cursor_row(mysql_engine, busy.name).consecutive_failures == 2
    assert len(harness.keys()) == 1
    assert harness.keys("staging/") == []

    assert harness.extractor.extract(busy).objects == 1
    newest = max(harness.keys())
    assert harness.read(newest)[0] == b"".join(r.data for r in more)
    assert cursor_row(mysql_engine, busy.name).consecutive_failures == 0
    assert len(extracted(broker.bootstrap, at_least=2)) == 2


# (address, port): what the security run registered and saw pulled, and other refused forms.
REFUSED_TARGETS: list[tuple[str, int | None]] = [
    ("10.0.0.1", None),
    ("172.16.0.1", None),
    ("192.168.1.1", None),
    ("100.64.0.1", None),
    ("100.100.100.200", None),
    ("169.254.169.254", None),
    ("fd00:ec2::254", None),
    ("fc00::1", None),
    ("::ffff:10.0.0.1", None),
    ("::127.0.0.1", None),
    ("::169.254.169.254", None),
    ("2002:a00:1::1", None),
    ("64:ff9b::a00:1", None),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", None),
    ("10.0.0.1", 6379),
    ("127.0.0.1", None),
]


def test_forbidden_addresses_are_never_called(
    fleet_factory: Any,
    harness_factory: Any,
    broker: Broker,
    mysql_engine: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fleet = fleet_factory(count=1, bind="ports", seed=6)
    harness = harness_factory(
        bucket_ca_file=str(fleet.ca_file), allowed_bucket_networks="", allowed_bucket_ports=""
    )
    called: list[httpx.Request] = []

    def bucket(request: httpx.Request) -> httpx.Response:
        called.append(request)
        return httpx.Response(200, content=b"log line\n", headers={"X-Log-Cursor": "1"})

    # Every call goes to this transport: whatever the code does, nothing leaves the machine
    # (none of these addresses may ever be a test's target), and any call is seen.
    extractor = Extractor(
        harness.settings,
        state=harness.state,
        s3=harness.s3,
        source_s3=lambda _region: harness.s3,
        producer=EventProducer(harness.settings, source="/rbr/test"),
        http=BucketClients(
            harness.settings, lambda _verify: httpx.Client(transport=httpx.MockTransport(bucket))
        ),
        vault=vault(harness.settings),
    )
    base = registration(fleet.buckets[0])
    try:
        for i, (ip, port) in enumerate(REFUSED_TARGETS):
            record = base.model_copy(
                update={"name": f"rustbucket-refused{i:02d}", "ip_address": ip, "port": port}
            )
            with (
                caplog.at_level(logging.WARNING),
                pytest.raises(ExtractionError, match=rf"refusing to call {re.escape(ip)}: "),
            ):
                extractor.extract(record)
            assert cursor_row(mysql_engine, record.name).last_error.startswith(
                f"ExtractionError: refusing to call {ip}: "
            )
            assert any(
                f"refusing to call {ip}: " in r.getMessage()
                for r in caplog.records
                if r.levelno == logging.WARNING
            ), ip
    finally:
        extractor.close()
    assert called == []
    assert "port 6379 is not called" in cursor_row(mysql_engine, "rustbucket-refused14").last_error
    assert harness.keys() == []


def test_a_bucket_on_a_port_no_longer_allowed_is_not_connected_to(
    fleet_factory: Any, harness_factory: Any, broker: Broker, tcp_proxy_factory: Any
) -> None:
    fleet = fleet_factory(count=1, bind="ports", seed=16)
    [info] = fleet.buckets
    # A real bucket behind a proxy that counts every connection made to it.
    proxy = tcp_proxy_factory(info.ip, info.port)
    record = registration(info).model_copy(update={"port": proxy.port})
    fleet.emit(record.name, 5)
    allowed = harness_factory(
        bucket_ca_file=str(fleet.ca_file), allowed_bucket_ports=str(proxy.port)
    )
    assert allowed.extractor.extract(record).objects == 1
    assert proxy.accepted >= 1  # the proxy sees the extractor's connections
    connections = proxy.accepted
    requests = len(fleet.requests(record.name))
    fleet.emit(record.name, 5)

    # The operator narrows the allowed ports: the bucket registered earlier is not called.
    narrowed = harness_factory(bucket_ca_file=str(fleet.ca_file), allowed_bucket_ports="8443")
    with pytest.raises(ExtractionError, match=f"port {proxy.port} is not called"):
        narrowed.extractor.extract(record)
    assert proxy.accepted == connections
    assert len(fleet.requests(record.name)) == requests
    assert len(narrowed.keys()) == 1


def test_announcement_lost_after_the_cursor_moved_is_sent_next_cycle(
    fleet_factory: Any, harness_factory: Any, mysql_engine: Engine, broker: Broker
) -> None:
    fleet = fleet_factory(count=1, bind="ports", seed=7, log_start=LOG_START)
    harness = harness_factory(bucket_ca_file=str(fleet.ca_file))
    record = registration(fleet.buckets[0])
    fleet.emit(record.name, 5)
    # The object is stored and the cursor moves, but the event cannot be sent (no broker).
    unreachable = harness_factory(
        bucket_ca_file=str(fleet.ca_file),
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        kafka_message_timeout_ms=1000,
    )
    with pytest.raises(ExtractionError, match="DeliveryError"):
        unreachable.extractor.extract(record)
    row = cursor_row(mysql_engine, record.name)
    assert row.pending_event is not None
    assert row.http_cursor == "5"
    assert harness.extractor.extract(record).objects == 0  # nothing new to pull ...
    [event] = extracted(broker.bootstrap, at_least=1)  # ... but the stored object announced
    assert harness.keys() == [event.s3_key]
    assert cursor_row(mysql_engine, record.name).pending_event is None


def test_a_compressed_body_is_stored_as_sent_never_inflated(
    fleet_factory: Any, harness_factory: Any, broker: Broker
) -> None:
    fleet = fleet_factory(count=1, bind="ports", seed=14)
    harness = harness_factory(bucket_ca_file=str(fleet.ca_file), extract_max_bytes=MIB)
    record = registration(fleet.buckets[0])
    bomb = gzip.compress(b"\0" * (64 * MIB))  # 64 KB that would inflate to 64 MiB
    seen: list[httpx.Request] = []

    def bucket(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        headers = {"Content-Encoding": "gzip", "X-Log-Cursor": "7"}
        return httpx.Response(200, headers=headers, content=iter([bomb]))  # streamed

    extractor = Extractor(
        harness.settings,
        state=harness.state,
        s3=harness.s3,
        source_s3=lambda _region: harness.s3,
        producer=EventProducer(harness.settings, source="/rbr/test"),
        http=BucketClients(
            harness.settings, lambda _verify: httpx.Client(transport=httpx.MockTransport(bucket))
        ),
        vault=vault(harness.settings),
    )
    try:
        assert extractor.extract(record).objects == 1
    finally:
        extractor.close()
    assert seen[0].headers["Accept-Encoding"] == "identity"
    [key] = harness.keys()
    assert harness.read(key)[0] == bomb
    [event] = extracted(broker.bootstrap, at_least=1)
    assert event.size_bytes == len(bomb)


# -- S3-to-S3 copies --------------------------------------------------------------------------


def test_s3_copies_each_object_once_even_out_of_key_order(
    fleet_factory: Any,
    harness_factory: Any,
    moto_s3: MotoS3,
    mysql_engine: Engine,
    broker: Broker,
) -> None:
    fleet = fleet_factory(
        count=1,
        bind="ports",
        seed=8,
        log_start=LOG_START,
        s3_fraction=1.0,
        s3_settings=S3Settings(endpoint_url=moto_s3.endpoint_url, prefix="logs/"),
    )
    harness = harness_factory(bucket_ca_file=str(fleet.ca_file))
    record: BucketRegistered = registration(fleet.buckets[0])
    assert record.s3 is not None
    records = fleet.emit(record.name, 40)
    source_keys = fleet.flush_to_s3(record.name)

    assert harness.extractor.extract(record).objects == len(source_keys)
    assert harness.extractor.extract(record).objects == 0
    events = extracted(broker.bootstrap, at_least=len(source_keys))
    copied = b"".join(
        harness.read(e.s3_key)[0] for e in sorted(events, key=lambda e: e.source_ref or "")
    )
    assert copied == b"".join(r.data for r in records)
    assert {e.source for e in events} == {LogSource.S3}
    assert all(harness.read(e.s3_key)[1]["sha256"] == e.sha256 for e in events)

    # An object that appears later with a key sorting first is still copied; an empty one
    # is noted and not announced.
    source = moto_s3.client()
    early = f"{source_prefix(record.s3.prefix, record.name)}rustbucket.log.2000-01-01-00"
    source.put_object(Bucket=record.s3.bucket_name, Key=early, Body=records[0].data)
    source.put_object(Bucket=record.s3.bucket_name, Key=early + ".empty", Body=b"")
    assert harness.extractor.extract(record).objects == 1
    assert len(extracted(broker.bootstrap, at_least=len(source_keys) + 1)) == len(source_keys) + 1

    # The broker gone just after a copy (as a crash between copy and announcement): the
    # ledger has the copy and its event is pending; the next cycle sends that event and
    # copies nothing again.
    late = f"{source_prefix(record.s3.prefix, record.name)}rustbucket.log.2100-01-01-00"
    source.put_object(Bucket=record.s3.bucket_name, Key=late, Body=records[1].data)
    unreachable = harness_factory(
        bucket_ca_file=str(fleet.ca_file),
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        kafka_message_timeout_ms=1000,
    )
    with pytest.raises(ExtractionError, match="DeliveryError"):
        unreachable.extractor.extract(record)
    assert cursor_row(mysql_engine, record.name).pending_event is not None
    keys_before = harness.keys()
    assert harness.extractor.extract(record).objects == 0
    assert harness.keys() == keys_before
    events = extracted(broker.bootstrap, at_least=len(source_keys) + 2)
    assert len(events) == len(source_keys) + 2
    assert (events[-1].source_ref or "").endswith(late)
    assert events[-1].s3_key in keys_before
    assert cursor_row(mysql_engine, record.name).pending_event is None


def test_an_old_source_object_is_keyed_by_its_copy_date_and_outlives_retention(
    fleet_factory: Any,
    harness_factory: Any,
    moto_s3: MotoS3,
    mysql_engine: Engine,
    raw_bucket: str,
    broker: Broker,
) -> None:
    fleet = fleet_factory(
        count=1,
        bind="ports",
        seed=15,
        log_start=LOG_START,
        s3_fraction=1.0,
        s3_settings=S3Settings(endpoint_url=moto_s3.endpoint_url, prefix="logs/"),
    )
    harness = harness_factory(bucket_ca_file=str(fleet.ca_file))
    record: BucketRegistered = registration(fleet.buckets[0])
    assert record.s3 is not None
    source = moto_s3.client()
    key = f"{source_prefix(record.s3.prefix, record.name)}rustbucket.log.2001-01-01-00"
    source.put_object(Bucket=record.s3.bucket_name, Key=key, Body=b"an old record\n")

    def backdate(parsed: dict[str, Any], **_: Any) -> None:
        # moto dates objects at upload; the source says this one was written in 2001.
        for item in parsed.get("Contents", []):
            item["LastModified"] = datetime(2001, 1, 1, tzinfo=UTC)

    source.meta.events.register("after-call.s3.ListObjectsV2", backdate)
    extractor = Extractor(
        harness.settings,
        state=harness.state,
        s3=harness.s3,
        source_s3=lambda _region: source,
        producer=EventProducer(harness.settings, source="/rbr/test"),
        http=BucketClients(harness.settings, lambda _verify: httpx.Client()),
        vault=vault(harness.settings),
    )
    try:
        assert extractor.extract(record).objects == 1
    finally:
        extractor.close()
    [event] = extracted(broker.bootstrap, at_least=1)
    assert event.s3_key == raw_key(record.name, event.extracted_at, event.object_id)
    assert event.extracted_at > utcnow() - timedelta(hours=1)

    report = run_retention(
        rows=LogRows(mysql_engine),
        s3=harness.s3,
        bucket=raw_bucket,
        now=utcnow(),
        log_days=0,
        raw_days=1,
        chunk=1000,
    )
    assert report.objects_deleted == 0
    assert harness.keys() == [event.s3_key]


def _rows_by_object(engine: Engine) -> dict[str, list[Any]]:
    with engine.connect() as connection:
        rows = connection.execute(select(logs).order_by(logs.c.record_no)).all()
    by_key: dict[str, list[Any]] = {}
    for row in rows:
        by_key.setdefault(row.source_key, []).append(dict(row._mapping))
    return by_key


def test_s3_source_that_grows_is_copied_from_where_it_was_and_parsed_once(
    fleet_factory: Any,
    harness_factory: Any,
    moto_s3: MotoS3,
    mysql_database_url: str,
    mysql_engine: Engine,
    raw_bucket: str,
    broker: Broker,
) -> None:
    fleet = fleet_factory(
        count=1,
        bind="ports",
        seed=13,
        log_start=LOG_START,
        s3_fraction=1.0,
        s3_settings=S3Settings(endpoint_url=moto_s3.endpoint_url, prefix="logs/"),
    )
    harness = harness_factory(bucket_ca_file=str(fleet.ca_file))
    record: BucketRegistered = registration(fleet.buckets[0])
    assert record.s3 is not None
    records = fleet.emit(record.name, 40)
    source = moto_s3.client()
    bucket = record.s3.bucket_name
    key = f"{source_prefix(record.s3.prefix, record.name)}rustbucket.log"

    def upload(start: int, end: int) -> bytes:
        data = b"".join(r.data for r in records[start:end])
        source.put_object(Bucket=bucket, Key=key, Body=data)
        return data

    def copied() -> bytes:
        newest = extracted(broker.bootstrap)[-1]
        return harness.read(newest.s3_key)[0]

    upload(0, 10)
    assert harness.extractor.extract(record).objects == 1
    grown = upload(0, 25)
    assert harness.extractor.extract(record).objects == 1
    assert copied() == grown[len(b"".join(r.data for r in records[:10])) :]
    # The same bytes uploaded again (multipart: a new ETag) bring nothing new.
    upload_id = source.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    part = source.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=grown)
    source.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert harness.extractor.extract(record).objects == 0
    # Rewritten (its first bytes changed): copied whole again.
    rewritten = upload(5, 30)
    assert harness.extractor.extract(record).objects == 1
    assert copied() == rewritten
    # A ledger row from before the copied bytes' hash was kept: the earlier copy's says.
    with mysql_engine.begin() as connection:
        connection.execute(update(s3_copy_ledger).values(source_sha256=None))
    upload(5, 35)
    assert harness.extractor.extract(record).objects == 1
    assert copied() == b"".join(r.data for r in records[30:35])

    events = extracted(broker.bootstrap, at_least=4)
    assert len(events) == 4
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
    with running(build_parser(parser_settings)):
        read_events(broker.bootstrap, LOGS_PARSED, at_least=4, timeout=60)
    rows = _rows_by_object(mysql_engine)
    expected = [records[0:10], records[10:25], records[5:30], records[30:35]]
    for event, wanted in zip(events, expected, strict=True):
        assert mismatches(rows[event.s3_key], wanted) == []
    assert sum(len(r) for r in rows.values()) == 55


# -- by hand ---------------------------------------------------------------------------------


def test_extract_logs_task_runs_one_cycle(
    fleet_factory: Any,
    mysql_database_url: str,
    mysql_engine: Engine,
    moto_s3: MotoS3,
    raw_bucket: str,
    broker: Broker,
) -> None:
    fleet = fleet_factory(count=2, bind="ports", seed=10)
    publish_registrations(broker.bootstrap, [registration(b) for b in fleet.buckets])
    emitted = fleet.emit(fleet.names[0], 5)
    env = {
        "RBR_KAFKA_BOOTSTRAP": broker.bootstrap,
        "RBR_DATABASE_URL": mysql_database_url,
        "RBR_S3_ENDPOINT_URL": moto_s3.endpoint_url,
        "RBR_S3_BUCKET": raw_bucket,
        "RBR_SECRET_KEY": TEST_SECRET_KEY,
        "RBR_BUCKET_CA_FILE": str(fleet.ca_file),
        "RBR_ALLOWED_BUCKET_NETWORKS": "127.0.0.0/8",
        "RBR_ALLOWED_BUCKET_PORTS": SIMULATED_BUCKET_PORTS,
    }
    result = CliRunner().invoke(app, ["run-task", "extract_logs"], env=env)
    assert result.exit_code == 0, result.output
    size = sum(r.size for r in emitted)
    assert f"2 active buckets: 1 objects ({size} bytes) stored, 0 failed" in result.output
    [event] = extracted(broker.bootstrap, at_least=1)
    assert event.name == fleet.names[0]
    assert cursor_row(mysql_engine, fleet.names[0]).lease_owner is None


class _BothOwn:
    """A bucket directory in which both replicas own every bucket (a rebalance overlap)."""

    def __init__(self, records: list[BucketRegistered]) -> None:
        self.records = records
        self.caught_up = True

    def buckets(self) -> list[BucketRegistered]:
        return self.records


def test_two_replicas_extract_each_bucket_once_per_slot(
    fleet_factory: Any, harness_factory: Any, mysql_engine: Engine, broker: Broker
) -> None:
    fleet = fleet_factory(count=4, bind="ports", seed=12)
    records = [registration(info) for info in fleet.buckets]
    for record in records:
        fleet.emit(record.name, 3)
    replicas = []
    for owner in ("replica-a", "replica-b"):
        harness = harness_factory(bucket_ca_file=str(fleet.ca_file))
        state = ExtractState(mysql_engine, owner)
        replicas.append(
            ExtractScheduler(
                harness.settings,
                directory=_BothOwn(records),  # type: ignore[arg-type]
                extractor=harness.extractor,
                state=state,
                s3=harness.s3,
            )
        )
    moment = datetime.now(UTC)
    for _ in range(3):  # both replicas look several times during the same slot
        for replica in replicas:
            replica.tick(moment)
        for replica in replicas:
            assert replica.wait_idle(30)
    for replica in replicas:
        replica.stop()
    assert fleet.request_counts("/extract_logs") == dict.fromkeys(fleet.names, 1)
    assert len(extracted(broker.bootstrap, at_least=4)) == 4


def _fake_bucket_extractor(harness: Any, body: Callable[[], Iterator[bytes]]) -> Extractor:
    """Returns an extractor whose every bucket answers /extract_logs with body()."""

    def bucket(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"X-Log-Cursor": "9"}, content=body())  # streamed

    return Extractor(
        harness.settings,
        state=harness.state,
        s3=harness.s3,
        source_s3=lambda _region: harness.s3,
        producer=EventProducer(harness.settings, source="/rbr/test"),
        http=BucketClients(
            harness.settings, lambda _verify: httpx.Client(transport=httpx.MockTransport(bucket))
        ),
        vault=vault(harness.settings),
    )


def test_sigterm_during_a_slow_transfer_aborts_it_cleanly_and_the_next_cycle_redoes_it(
    fleet_factory: Any, harness_factory: Any, mysql_engine: Engine, broker: Broker
) -> None:
    fleet = fleet_factory(count=1, bind="ports", seed=16)
    harness = harness_factory(bucket_ca_file=str(fleet.ca_file))
    record = registration(fleet.buckets[0])
    line = b"2025-10-28T19:05:41Z  INFO rustbucket: the first part, 64 bytes\n"
    head = line * (5 * MIB // len(line))  # exactly one multipart part
    teardown = threading.Event()

    def slow_body() -> Iterator[bytes]:
        # One multipart part's worth at once, then a trickle that never ends on its own
        # (2 KB/s: gathering 1 MiB before looking at the stop would take minutes).
        yield head
        while not teardown.is_set():
            time.sleep(0.05)  # the bucket's pace, not a wait for the test
            yield b"x" * 100

    extractor = _fake_bucket_extractor(harness, slow_body)
    scheduler = ExtractScheduler(
        harness.settings,
        directory=_BothOwn([record]),  # type: ignore[arg-type]
        extractor=extractor,
        state=harness.state,
        s3=harness.s3,
    )
    thread = threading.Thread(target=scheduler.run, name="scheduler", daemon=True)
    try:
        thread.start()

        def uploading() -> bool:
            listing = harness.s3.list_multipart_uploads(Bucket=harness.settings.s3_bucket)
            return bool(listing.get("Uploads"))

        wait_for(uploading, timeout=30, message="a multipart upload in progress")
        scheduler.stop()  # what SIGTERM does (Service._shutdown), within its 20 s grace
        thread.join(20)
        assert not thread.is_alive(), "the transfer did not notice the stop"
    finally:
        teardown.set()
        thread.join(30)
        extractor.close()

    listing = harness.s3.list_multipart_uploads(Bucket=harness.settings.s3_bucket)
    assert listing.get("Uploads", []) == []
    assert harness.keys("") == []  # nothing under raw/ nor staging/
    assert extracted(broker.bootstrap) == []
    row = cursor_row(mysql_engine, record.name)
    assert (row.http_cursor, row.pending_event, row.lease_owner) == (None, None, None)
    assert row.consecutive_failures == 0  # interrupted, not failed
    slot = extract_slots(harness.settings).owed(record.name, utcnow())
    assert slot is not None
    assert row.last_extract_slot < slot  # given back: the next cycle does it

    whole = _fake_bucket_extractor(harness, lambda: iter([head]))
    try:
        assert whole.extract(record).objects == 1
    finally:
        whole.close()
    [event] = extracted(broker.bootstrap, at_least=1)
    assert harness.keys() == [event.s3_key]
    assert (len(line), event.size_bytes) == (64, 5 * MIB)
