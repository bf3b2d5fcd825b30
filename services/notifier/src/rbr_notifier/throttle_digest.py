"""Throttle digests: when a window ends, what its throttle folded goes out as one message.

The digest sweeper (on every replica) claims each ended window that still holds folded
deliveries, sends one digest per channel with the usual tries and marks its items digested;
it also sends digest resolves left pending (see `closing`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from rbr_notifier.channels import ChannelsFile
from rbr_notifier.closing import KeyedLocks, send_digest_resolve
from rbr_notifier.delivery import Interrupted, deliver
from rbr_notifier.dispatch import claim_lease, policy_of
from rbr_notifier.lifecycle import FoldedItem, digest_contents, digested_state
from rbr_notifier.metrics import DIGEST_BACKLOG, DIGESTS
from rbr_notifier.model import DeliveryState, Digest, DigestItem, Kind, Notification
from rbr_notifier.senders.base import AttemptResult, Sender
from rbr_notifier.settings import NotifierSettings
from rbr_notifier.store import NotifierStore
from rbr_notifier.store.windows import DigestResolve, DueWindow
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
        digest_locks: KeyedLocks | None = None,
    ) -> None:
        """Wires the sweeper; `digest_locks` is the consumer dispatcher's (same claim owner)."""
        self._store = store
        self._channels = channels
        self._senders = senders
        self._settings = settings
        self._pool = pool
        self._stop = stop or threading.Event()
        self._clock = clock
        self._wait = wait
        self._owner = owner or worker_identity()
        self._lease = claim_lease(settings, channels)
        self._digest_locks = digest_locks or KeyedLocks()

    def run_once(self) -> int:
        """Sends every due digest, then pending digest resolves; returns how many digests."""
        now = self._clock()
        due = self._store.windows.due_windows(now)
        DIGEST_BACKLOG.set(self._store.windows.backlog())
        futures = [self._pool.submit(self._send_window, window, now) for window in due]
        delivered = sum(1 for future in futures if future.result())
        resolves = self._store.windows.pending_digest_resolves()
        for future in [self._pool.submit(self._send_resolve, target) for target in resolves]:
            future.result()
        return delivered

    def _send_resolve(self, target: DigestResolve) -> None:
        key = (target.channel, target.window_start)
        with (
            log_context(channel=target.channel, window_start=target.window_start.isoformat()),
            self._digest_locks.hold(key, blocking=False) as held,
        ):
            if held:
                self._send_held_resolve(target)
            # else: a delivery thread of this replica is sending it

    def _send_held_resolve(self, target: DigestResolve) -> None:
        channel = self._channels.get(target.channel)
        sender = self._senders.get(target.channel)
        if channel is None or sender is None or not channel.enabled:
            why = "channel removed" if channel is None else "channel disabled"
            self._store.deliveries.finish(target.id, DeliveryState.SKIPPED, why)
            return
        try:
            send_digest_resolve(
                self._store.deliveries,
                target,
                sender,
                policy_of(channel, self._settings),
                owner=self._owner,
                lease=self._lease,
                stop=self._stop,
                wait=self._wait,
            )
        except Interrupted:
            return  # given back: sent after the restart

    def _send_window(self, window: DueWindow, now: datetime) -> bool:
        if not self._store.windows.claim_digest(window, self._owner, now, CLAIM_LEASE):
            return False
        with log_context(channel=window.channel, window_start=window.window_start.isoformat()):
            try:
                return self._deliver(window)
            except Interrupted:
                self._store.windows.finish_digest(window, [], DeliveryState.THROTTLED, None)
                return False

    def _deliver(self, window: DueWindow) -> bool:
        channel = self._channels.get(window.channel)
        sender = self._senders.get(window.channel)
        closes = sender is not None and sender.closes_digests
        contents = digest_contents(self._store.windows.folded_items(window), closes_digests=closes)
        if contents.acknowledged:
            self._store.windows.finish_digest(
                window,
                [i.delivery_id for i in contents.acknowledged],
                DeliveryState.SKIPPED,
                "alert acknowledged before the digest",
                release=False,
            )
        if contents.late:
            self._store.windows.finish_digest(
                window,
                [i.delivery_id for i in contents.late],
                DeliveryState.DIGESTED,
                "firing in an earlier digest; resolved with it",
                release=False,
                plan_resolve=True,
            )
        items = list(contents.carried)
        if not items:
            self._store.windows.finish_digest(window, [], DeliveryState.SKIPPED, None)
            return False
        if channel is None or sender is None or not channel.enabled:
            # A disabled channel hears nothing, digests included (like its direct deliveries).
            ids = [i.delivery_id for i in items]
            why = "channel removed" if channel is None else "channel disabled"
            self._store.windows.finish_digest(window, ids, DeliveryState.SKIPPED, why)
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
        state = digested_state(outcome.state)
        self._store.windows.finish_digest(
            window,
            [i.delivery_id for i in items],
            state,
            f"digest {outcome.summary()}",
            plan_resolve=closes and state is DeliveryState.DIGESTED,
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
            self._store.deliveries.record_attempt(
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
