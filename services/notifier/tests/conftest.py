"""Shared builders for the notifier's tests: alerts, inbound messages, a wired notifier."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from rbr_notifier.channels import ChannelsFile, parse_channels
from rbr_notifier.closing import KeyedLocks
from rbr_notifier.dispatch import Dispatcher
from rbr_notifier.handlers import AlertHandler
from rbr_notifier.main import build_senders
from rbr_notifier.retry_sweeper import RetrySweeper
from rbr_notifier.settings import NotifierSettings
from rbr_notifier.store import NotifierStore
from rbr_notifier.throttle_digest import DigestSweeper
from rbr_runtime.db.driver import speed_up_datetimes
from rbr_runtime.db.tables import notifications, notifier_deliveries
from rbr_runtime.kafka import EventProducer
from rbr_runtime.kafka.codec import encode, make_event
from rbr_runtime.kafka.consumer import Inbound, Rejection
from rbr_schemas import ALERTS, Alert

T0 = datetime(2026, 11, 21, 9, 0, 0, tzinfo=UTC)


def build_alert(
    dedupe_key: str = "bucket_unresponsive:rustbucket-a1",
    *,
    state: str = "firing",
    severity: str = "high",
    type: str = "bucket_unresponsive",
    bucket: str | None = "rustbucket-a1",
    alert_id: str | None = None,
    occurred_at: datetime = T0,
    title: str | None = None,
    detail: str = "No successful poll for 15 minutes; last error: timeout.",
    context: dict[str, Any] | None = None,
) -> Alert:
    """Returns an alert; its id is stable per dedupe key unless given."""
    return Alert(
        alert_id=alert_id or str(uuid.uuid5(uuid.NAMESPACE_URL, dedupe_key)),
        dedupe_key=dedupe_key,
        type=type,
        severity=severity,
        state=state,
        bucket=bucket,
        title=title or f"Alert {dedupe_key}",
        detail=detail,
        source="/rbr/poller",
        occurred_at=occurred_at,
        context=context if context is not None else {"consecutive_failures": 3},
    )


_offsets = itertools.count()


def build_inbound(
    alert: Alert, *, event_id: str | None = None, offset: int | None = None
) -> Inbound[Any]:
    """Returns the message the consumer runner would hand the handler for an alert event."""
    event = make_event(ALERTS, alert, source="/rbr/poller", subject=alert.bucket, event_id=event_id)
    return Inbound(
        topic="alerts",
        partition=0,
        offset=next(_offsets) if offset is None else offset,
        key=alert.dedupe_key.encode(),
        value=encode(event),
        headers=[],
        timestamp_ms=None,
        event=event,
    )


class Clock:
    """A settable clock for throttle windows and digests."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Notifier:
    """The notifier's parts wired on the test database, without a broker."""

    store: NotifierStore
    alert_handler: AlertHandler
    dispatcher: Dispatcher
    sweeper: DigestSweeper
    retries: RetrySweeper
    clock: Clock
    pauses: list[float] = field(default_factory=list)

    def handler(self, batch: Sequence[Inbound[Any]]) -> None:
        """Handles a batch as the consumer runner does; fails if a message was rejected."""
        rejections = self.alert_handler(batch)
        assert rejections == [], [r.reason for r in rejections]

    def rejected(self, batch: Sequence[Inbound[Any]]) -> list[Rejection]:
        """Handles a batch as the consumer runner does; returns what the handler rejected."""
        return self.alert_handler(batch)

    def deliveries(self) -> list[Any]:
        with self.store.engine.connect() as connection:
            return list(
                connection.execute(select(notifier_deliveries).order_by(notifier_deliveries.c.id))
            )

    def attempts(self) -> list[Any]:
        with self.store.engine.connect() as connection:
            return list(connection.execute(select(notifications).order_by(notifications.c.id)))


def quick_settings(**overrides: Any) -> NotifierSettings:
    """Settings with tiny retry pauses and throttling off unless asked for."""
    values: dict[str, Any] = {
        "notifier_max_attempts": 3,
        "notifier_retry_initial_backoff": 0.01,
        "notifier_retry_max_backoff": 0.02,
        "notifier_timeout": 2.0,
        "notifier_throttle_max": 0,
        **overrides,
    }
    return NotifierSettings(**values)


@pytest.fixture
def notifier_factory(mysql_engine: Engine) -> Iterator[Callable[..., Notifier]]:
    """Wires store, dispatcher, handler and sweeper for a channels document."""
    pools: list[ThreadPoolExecutor] = []

    def wire(
        document: dict[str, Any] | ChannelsFile,
        *,
        workers: int = 4,
        owner: str = "replica-1",
        wait: Callable[[float], bool] | None = None,
        producer: EventProducer | None = None,
        **settings: Any,
    ) -> Notifier:
        channels = document if isinstance(document, ChannelsFile) else parse_channels(document)
        config = quick_settings(**settings)
        # The service's own engine converts datetimes the cheaper way: so do the tests'.
        speed_up_datetimes(mysql_engine)
        store = NotifierStore(mysql_engine)
        senders = build_senders(channels, config)
        pool = ThreadPoolExecutor(workers)
        pools.append(pool)
        clock = Clock()
        pauses: list[float] = []

        def record_pause(seconds: float) -> bool:
            pauses.append(seconds)
            return wait(seconds) if wait is not None else False

        digest_locks = KeyedLocks()
        dispatcher = Dispatcher(
            store,
            channels,
            senders,
            config,
            pool,
            clock=clock,
            wait=record_pause,
            owner=owner,
            digest_locks=digest_locks,
        )
        handler = AlertHandler(
            store, dispatcher, channels, reopen_after=config.notifier_reopen_after
        )
        sweeper = DigestSweeper(
            store,
            channels,
            senders,
            config,
            pool,
            clock=clock,
            wait=record_pause,
            owner=owner,
            digest_locks=digest_locks,
        )
        retry_dispatcher = Dispatcher(
            store,
            channels,
            senders,
            config,
            pool,
            clock=clock,
            wait=record_pause,
            owner=owner,
            retry_sweep=True,
        )
        retries = RetrySweeper(
            store, retry_dispatcher, channels, producer, group="notifier", clock=clock
        )
        return Notifier(store, handler, dispatcher, sweeper, retries, clock, pauses)

    yield wire
    for pool in pools:
        pool.shutdown(wait=True)


@pytest.fixture
def make_alert() -> Callable[..., Alert]:
    """Builds alerts (see build_alert)."""
    return build_alert


@pytest.fixture
def to_inbound() -> Callable[..., Inbound[Any]]:
    """Wraps an alert in the message the consumer runner hands the handler."""
    return build_inbound
