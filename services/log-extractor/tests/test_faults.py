"""Faults: a database outage in the middle of an extraction, and buckets that trickle.

Buckets are played by real HTTP servers (`played_buckets`); the database sits behind a TCP
proxy the test cuts and restores; S3 (moto) and the broker are real.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url

from rbr_log_extractor.main import make_extractor
from rbr_log_extractor.pulls import RateFloor, TooSlow
from rbr_log_extractor.scheduler import ExtractScheduler
from rbr_log_extractor.store import ExtractState
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.tables import extract_cursors
from rbr_schemas import LOGS_EXTRACTED, BucketRegistered, LogsExtracted
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events
from rbr_testing.tcp_proxy import TcpProxyFactory
from rbr_testing.waiting import wait_for

MIB = 1024 * 1024


class _Owns:
    """A bucket directory that owns the given buckets (no consumer group needed).

    `looks` counts the scheduler's looks for due buckets (it asks first whether the
    directory is caught up).
    """

    def __init__(self, records: list[BucketRegistered]) -> None:
        self.records = records
        self.looks = 0

    @property
    def caught_up(self) -> bool:
        self.looks += 1
        return True

    def buckets(self) -> list[BucketRegistered]:
        return list(self.records)


def cursor_row(engine: Engine, name: str) -> Any:
    with engine.connect() as connection:
        return connection.execute(
            select(extract_cursors).where(extract_cursors.c.name == name)
        ).one_or_none()


def extracted(bootstrap: str, at_least: int = 0) -> list[LogsExtracted]:
    return [e.data for e in read_events(bootstrap, LOGS_EXTRACTED, at_least=at_least)]


def in_flight() -> float:
    return REGISTRY.get_sample_value("rbr_extractor_in_flight") or 0.0


def test_rate_floor_judges_each_window_on_its_own() -> None:
    now = [0.0]
    floor = RateFloor(100, 10, clock=lambda: now[0])
    now[0] = 9.9
    floor.add(5)  # under one window: not judged yet
    now[0] = 10.0
    floor.add(5000)  # 5005 bytes in 10 s: fast enough
    now[0] = 15.0
    floor.add(900)
    now[0] = 20.5
    with pytest.raises(TooSlow, match="sent 910 bytes in 10 s"):
        floor.add(10)  # a fast first window does not pay for a slow second one
    RateFloor(0, 1, clock=lambda: now[0]).add(0)  # 0: no minimum


def test_a_lease_held_through_a_database_outage_is_taken_back_when_it_returns(
    played_buckets: Any,
    settings_factory: Any,
    mysql_database_url: str,
    mysql_engine: Engine,
    tcp_proxy_factory: TcpProxyFactory,
    broker: Broker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = make_url(mysql_database_url)
    proxy = tcp_proxy_factory(url.host or "127.0.0.1", url.port or 3306)
    through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    # The default interval (15 minutes) and timeout (30): a retry within seconds comes from
    # the lease and slot given back, not from the next slot or the lease expiring.
    settings = settings_factory(database_url=through_proxy, bucket_scheme="http")
    engine = make_engine(through_proxy)
    state = ExtractState(engine, "replica-a")
    extractor, s3 = make_extractor(settings, state)
    bucket = played_buckets("rb-outage")
    everything = bucket.add_records(2000)
    cut_short = bucket.enqueue_answer(pause_at=len(everything) // 2)
    held = bucket.enqueue_answer(pause_at=0)
    late = played_buckets("rb-late")  # appears during the outage
    late_records = late.add_records(50)
    directory = _Owns([bucket.registration()])
    scheduler = ExtractScheduler(
        settings,
        directory=directory,  # type: ignore[arg-type]
        extractor=extractor,
        state=state,
        s3=s3,
    )

    def stored(event: LogsExtracted) -> bytes:
        return s3.get_object(Bucket=settings.s3_bucket, Key=event.s3_key)["Body"].read()

    caplog.set_level(logging.INFO, logger="rbr_log_extractor")
    thread = threading.Thread(target=scheduler.run, name="scheduler", daemon=True)
    thread.start()
    try:
        wait_for(cut_short.paused.is_set, message="an extraction under way")
        proxy.cut()
        cut_short.resume.set()  # the transfer ends; storing its cursor meets the outage
        directory.records.append(late.registration())
        looks = directory.looks
        wait_for(
            lambda: directory.looks >= looks + 20,
            message="twenty looks for due buckets during the outage",
        )
        row = cursor_row(mysql_engine, bucket.name)  # seen past the proxy
        assert (row.lease_owner, row.http_cursor) == ("replica-a", None)
        assert late.requests == []

        proxy.restore()
        wait_for(lambda: len(bucket.requests) == 2, timeout=15, message="the bucket pulled again")
        row = cursor_row(mysql_engine, bucket.name)
        assert row.last_error.startswith("OperationalError"), row.last_error
        assert row.consecutive_failures == 1
        assert row.lease_owner == "replica-a"  # taken again at once, not 31 minutes later
        assert bucket.requests == [None, None]  # the cursor did not move: everything again
        held.resume.set()
        by_name = {e.name: e for e in extracted(broker.bootstrap, at_least=2)}
        assert stored(by_name[bucket.name]) == everything
        assert stored(by_name[late.name]) == late_records
        wait_for(
            lambda: cursor_row(mysql_engine, bucket.name).lease_owner is None,
            message="the lease released",
        )
        row = cursor_row(mysql_engine, bucket.name)
        assert (row.last_error, row.consecutive_failures) == (None, 0)
        assert row.http_cursor == "2000"
    finally:
        scheduler.stop()
        thread.join(20)
        extractor.close()
        engine.dispose()

    ours = [r for r in caplog.records if r.name.startswith("rbr_log_extractor")]
    assert [r.getMessage() for r in ours if r.exc_info] == []
    warnings = [r.getMessage() for r in ours if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("database unavailable, extractions are retried")
    assert "OperationalError" in warnings[0]
    assert any(r.getMessage().startswith("database available again") for r in ours)


def test_a_stalled_pull_is_given_up_cleanly_and_pulled_again_from_its_cursor(
    played_buckets: Any,
    harness_factory: Any,
    mysql_engine: Engine,
    broker: Broker,
) -> None:
    harness = harness_factory(bucket_scheme="http", extract_min_rate=100, extract_rate_window=2)
    bucket = played_buckets("rb-stall")
    first = bucket.add_records(10)
    scheduler = ExtractScheduler(
        harness.settings,
        directory=_Owns([bucket.registration()]),  # type: ignore[arg-type]
        extractor=harness.extractor,
        state=harness.state,
        s3=harness.s3,
    )
    assert harness.extractor.extract(bucket.registration()).objects == 1
    assert cursor_row(mysql_engine, bucket.name).http_cursor == "10"
    # More than one multipart part at full speed, then a byte a second: a fast first
    # window does not let the pull trickle on.
    more = bucket.add_records(5 * MIB // 64 + 10)
    bucket.enqueue_answer(trickle=True)
    assert scheduler.tick() == 1
    assert scheduler.wait_idle(30)

    row = cursor_row(mysql_engine, bucket.name)
    assert "less than 100 bytes/s" in row.last_error
    assert (row.consecutive_failures, row.http_cursor, row.lease_owner) == (1, "10", None)
    uploads = harness.s3.list_multipart_uploads(Bucket=harness.settings.s3_bucket)
    assert uploads.get("Uploads", []) == []
    assert harness.keys("staging/") == []
    assert len(harness.keys()) == 1  # the first pull's object only
    assert len(extracted(broker.bootstrap, at_least=1)) == 1

    assert harness.extractor.extract(bucket.registration()).objects == 1
    events = extracted(broker.bootstrap, at_least=2)
    assert [harness.read(e.s3_key)[0] for e in events] == [first, more]
    assert bucket.requests == [None, "10", "10"]


def test_a_healthy_bucket_keeps_being_pulled_while_nine_others_trickle(
    played_buckets: Any,
    harness_factory: Any,
    mysql_engine: Engine,
) -> None:
    # The default concurrency (8), a pull needing 100 bytes/s over each 2 seconds, and every
    # bucket due every 2 seconds.
    harness = harness_factory(
        bucket_scheme="http",
        extract_min_rate=100,
        extract_rate_window=2,
        extract_interval=2,
    )
    assert harness.settings.extract_concurrency == 8
    trickling = [played_buckets(f"rb-slow-{n}") for n in range(9)]
    for bucket in trickling:
        bucket.add_records(1)
        bucket.always(trickle=True)
    healthy = played_buckets("rb-healthy")
    records = [b.registration() for b in [*trickling, healthy]]
    scheduler = ExtractScheduler(
        harness.settings,
        directory=_Owns(records),  # type: ignore[arg-type]
        extractor=harness.extractor,
        state=harness.state,
        s3=harness.s3,
    )
    most_in_flight = [0.0]

    def healthy_pulled(times: int) -> bool:
        most_in_flight[0] = max(most_in_flight[0], in_flight())
        healthy.add_records(1)
        return len(healthy.requests) >= times

    thread = threading.Thread(target=scheduler.run, name="scheduler", daemon=True)
    thread.start()
    try:
        wait_for(lambda: healthy_pulled(6), timeout=60, message="the healthy bucket pulled")
        assert all(bucket.requests for bucket in trickling)
    finally:
        scheduler.stop()
        thread.join(30)
    assert most_in_flight[0] <= 8
    assert in_flight() == 0
    row = cursor_row(mysql_engine, healthy.name)
    assert (row.last_error, row.consecutive_failures) == (None, 0)
    assert int(row.http_cursor or 0) > 0
    for bucket in trickling:
        assert "bytes/s" in (cursor_row(mysql_engine, bucket.name).last_error or "")
