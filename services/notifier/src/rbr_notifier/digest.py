"""Digests: when a throttle window ends, what it folded goes out as one message per channel.

Folded notifications are rows in `notifier_deliveries` (state throttled) written before the
alert's offset was committed, so a crash loses none: the sweeper finds every ended window that
still holds some, claims it (a lease in `notifier_windows`, so one replica sends it), sends one
digest through the channel with the usual retries, and marks the items digested. Triggers of
alerts acknowledged meanwhile are left out. A digest that cannot be delivered is recorded
(failed or rejected) in `notifications` and logged; its alerts stay in `rbr alerts list`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from rbr_notifier.config import ChannelsFile
from rbr_notifier.delivery import Interrupted, deliver
from rbr_notifier.dispatch import policy_of
from rbr_notifier.metrics import DIGEST_BACKLOG, DIGESTS
from rbr_notifier.model import AlertState, DeliveryState, Digest, DigestItem, Kind, Notification
from rbr_notifier.repository import DueWindow, FoldedItem, NotifierStore
from rbr_notifier.senders.base import AttemptResult, Sender
from rbr_notifier.settings import NotifierSettings
from rbr_runtime.jsonlog import log_context
from rbr_runtime.schedule import worker_identity
from rbr_schemas import utcnow

log = logging.getLogger(__name__)
CLAIM_LEASE = timedelta(minutes=15)


class DigestSweeper:
    """Sends the digests of ended throttle windows (run periodically)."""

    def __init__(
        self,
        store: NotifierStore,
        channels: ChannelsFile,
        senders: Mapping[str, Sender],
        settings: NotifierSettings,
        pool: ThreadPoolExecutor,
        *,
        stop: threading.Event | None = None,
        clock: Callable[[], datetime] = utcnow,
        wait: Callable[[float], bool] | None = None,
        owner: str | None = None,
    ) -> None:
        self._store = store
        self._channels = channels
        self._senders = senders
        self._settings = settings
        self._pool = pool
        self._stop = stop or threading.Event()
        self._clock = clock
        self._wait = wait
        self._owner = owner or worker_identity()

    def run_once(self) -> int:
        """Sends every due digest; returns how many were delivered."""
        now = self._clock()
        due = self._store.due_windows(now)
        DIGEST_BACKLOG.set(self._store.backlog())
        if not due:
            return 0
        futures = [self._pool.submit(self._send_window, window, now) for window in due]
        return sum(1 for future in futures if future.result())

    def _send_window(self, window: DueWindow, now: datetime) -> bool:
        if not self._store.claim_digest(window, self._owner, now, CLAIM_LEASE):
            return False
        with log_context(channel=window.channel, window_start=window.window_start.isoformat()):
            try:
                return self._deliver(window)
            except Interrupted:
                self._store.finish_digest(window, [], DeliveryState.THROTTLED, None)
                return False

    def _deliver(self, window: DueWindow) -> bool:
        items = self._store.folded_items(window)
        acknowledged = [i for i in items if i.kind is Kind.TRIGGER and _acknowledged(i)]
        if acknowledged:
            self._store.finish_digest(
                window,
                [i.delivery_id for i in acknowledged],
                DeliveryState.SKIPPED,
                "alert acknowledged before the digest",
                release=False,
            )
        items = [i for i in items if i not in acknowledged]
        channel = self._channels.get(window.channel)
        sender = self._senders.get(window.channel)
        if not items:
            self._store.finish_digest(window, [], DeliveryState.SKIPPED, None)
            return False
        if channel is None or sender is None or not channel.enabled:
            # A disabled channel hears nothing, digests included (like its direct deliveries).
            ids = [i.delivery_id for i in items]
            why = "channel removed" if channel is None else "channel disabled"
            self._store.finish_digest(window, ids, DeliveryState.SKIPPED, why)
            return False
        notification = self._notification(window, items)
        outcome = deliver(
            sender,
            notification,
            policy_of(channel, self._settings),
            self._recorder(window, notification),
            stop=self._stop,
            wait=self._wait,
        )
        state = DeliveryState.DIGESTED if outcome.state is DeliveryState.SENT else outcome.state
        self._store.finish_digest(
            window, [i.delivery_id for i in items], state, f"digest {outcome.summary()}"
        )
        DIGESTS.labels(window.channel, outcome.state.value).inc()
        if state is not DeliveryState.DIGESTED:
            log.error(
                "digest of %d notification(s) for channel %s %s",
                len(items),
                window.channel,
                outcome.summary(),
            )
        return state is DeliveryState.DIGESTED

    def _notification(self, window: DueWindow, items: list[FoldedItem]) -> Notification:
        listed = items[: self._settings.notifier_digest_max_items]
        digest = Digest(
            window_start=window.window_start,
            window_end=window.window_end,
            items=tuple(DigestItem(item.kind, item.alert) for item in listed),
            total=len(items),
        )
        return Notification(Kind.DIGEST, window.channel, digest=digest)

    def _recorder(
        self, window: DueWindow, notification: Notification
    ) -> Callable[[int, str, AttemptResult], None]:
        def record(attempt: int, status: str, result: AttemptResult) -> None:
            self._store.record_attempt(
                alert_id=None,
                dedupe_key=notification.dedupe_key,
                channel=window.channel,
                kind=Kind.DIGEST,
                attempt=attempt,
                status=status,
                http_status=result.http_status,
                error=result.error,
            )

        return record


def _acknowledged(item: FoldedItem) -> bool:
    return item.alert.state is AlertState.ACKNOWLEDGED
