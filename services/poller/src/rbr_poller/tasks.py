"""`rbr run-task pull_updates` and `rbr run-task health_check`: one cycle by hand.

Both read all of `bucket.registered` without joining the poller group, and claim no slots.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import httpx

from rbr_poller.main import SOURCE, poll_config, state_store
from rbr_poller.polling import poll_bucket
from rbr_poller.recorder import Recorder
from rbr_poller.settings import PollerSettings
from rbr_runtime.buckets import BucketClients, client_options, make_async_client
from rbr_runtime.db.engine import make_engine
from rbr_runtime.jsonlog import configure_logging
from rbr_runtime.kafka import EventProducer
from rbr_runtime.kafka.directory import read_registrations
from rbr_runtime.settings import load_settings
from rbr_schemas import BucketRegistered, BucketState, BucketStatus, utcnow

log = logging.getLogger(__name__)


async def _poll_all(
    settings: PollerSettings, records: list[BucketRegistered]
) -> list[BucketStatus]:
    config = poll_config(settings)
    limiter = asyncio.Semaphore(settings.bucket_concurrency)
    clients = BucketClients(
        settings, lambda verify: httpx.AsyncClient(verify=verify, **client_options(settings))
    )
    # The CA-verified client only when a bucket needs it: pinned buckets need no CA bundle.
    default = make_async_client(settings) if any(not r.tls_cert_sha256 for r in records) else None

    def client_for(record: BucketRegistered) -> httpx.AsyncClient:
        if record.tls_cert_sha256:
            return clients.pinned(record.tls_cert_sha256)
        assert default is not None
        return default

    try:
        polls = (poll_bucket(client_for(r), r, config, limiter) for r in records)
        return list(await asyncio.gather(*polls))
    finally:
        for client in [*clients.made(), *([default] if default else [])]:
            await client.aclose()


def _active(settings: PollerSettings) -> list[BucketRegistered]:
    """Returns the active buckets that are polled (s3-drop buckets never are)."""
    records = read_registrations(settings)
    polled = (r for r in records if r.state == BucketState.ACTIVE and r.delivery_mode.polled)
    return sorted(polled, key=lambda r: r.name)


def pull_updates(settings: PollerSettings | None = None) -> str:
    """Polls every active bucket once now; returns a one-line summary."""
    settings = settings or _settings()
    records = _active(settings)
    engine = make_engine(settings.database_url)
    producer = EventProducer(settings, source=SOURCE)
    try:
        store = state_store(engine, settings)
        recorder = Recorder(
            store, producer, settings.unresponsive_after, settings.upload_stale_after
        )
        store.ensure({r.name: r.bucket_id for r in records}, utcnow())
        statuses = asyncio.run(_poll_all(settings, records))
        recorder.record([(status, None) for status in statuses])
        health = recorder.check_health([r.name for r in records], utcnow())
    finally:
        producer.flush()
        engine.dispose()
    failures = Counter(s.error_class.value for s in statuses if s.error_class is not None)
    reachable = sum(1 for s in statuses if s.reachable)
    detail = ", ".join(f"{kind}: {count}" for kind, count in sorted(failures.items()))
    return (
        f"polled {len(statuses)} active bucket(s): {reachable} reachable, "
        f"{len(statuses) - reachable} not"
        + (f" ({detail})" if detail else "")
        + f"; alerts fired {len(health.fired)}, resolved {len(health.resolved)}"
    )


def health_check(settings: PollerSettings | None = None) -> str:
    """Checks every active bucket's health from the recorded polls; returns a summary."""
    settings = settings or _settings()
    records = read_registrations(settings)
    active = {r.name: r.bucket_id for r in records if r.state == BucketState.ACTIVE}
    uploading = [
        r.name for r in records if r.state == BucketState.ACTIVE and not r.delivery_mode.polled
    ]
    inactive = [r.name for r in records if r.state != BucketState.ACTIVE]
    engine = make_engine(settings.database_url)
    producer = EventProducer(settings, source=SOURCE)
    try:
        store = state_store(engine, settings)
        store.ensure(active, utcnow())
        recorder = Recorder(
            store, producer, settings.unresponsive_after, settings.upload_stale_after
        )
        polled = [name for name in active if name not in set(uploading)]
        summary = recorder.check_health(polled, utcnow(), inactive, uploading)
    finally:
        producer.flush()
        engine.dispose()
    return (
        f"checked {summary.checked} active bucket(s): {summary.open} unresponsive; "
        f"alerts fired {len(summary.fired)}, resolved {len(summary.resolved)}"
    )


def _settings() -> PollerSettings:
    settings = load_settings(PollerSettings)
    configure_logging("poller", "WARNING", "text")
    return settings
