"""Resolving digests: closing the incident a digest opened once all its alerts resolved.

On PagerDuty and Opsgenie a digest opens an incident under `rbr-digest:<window start>:<channel>`;
its resolve is a delivery like any other (claimed in the database, so one replica sends it).
Threads of one replica share a claim owner, so they also share a `KeyedLocks`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from rbr_notifier.delivery import (
    END_STATES,
    DeliveryOutcome,
    Interrupted,
    RetryPolicy,
    deliver,
)
from rbr_notifier.metrics import DIGEST_RESOLVES
from rbr_notifier.model import DeliveryState, Digest, Kind, Notification
from rbr_notifier.senders.base import AttemptResult, Sender
from rbr_notifier.store.deliveries import DeliveryStore
from rbr_notifier.store.windows import DigestResolve

log = logging.getLogger(__name__)


class KeyedLocks:
    """One lock per key, created on demand and dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[Hashable, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: Hashable, *, blocking: bool = True) -> Iterator[bool]:
        """Holds the key's lock; yields False (not held) if it was busy and not `blocking`."""
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        acquired = lock.acquire(blocking)
        try:
            yield acquired
        finally:
            if acquired:
                lock.release()
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


def resolve_notification(target: DigestResolve) -> Notification:
    """Returns the resolve of a digest: the digest's key, how many alerts it carried."""
    digest = Digest(target.window_start, target.window_end, items=(), total=target.total)
    return Notification(Kind.RESOLVE, target.channel, digest=digest)


def send_digest_resolve(
    store: DeliveryStore,
    target: DigestResolve,
    sender: Sender,
    policy: RetryPolicy,
    *,
    owner: str,
    lease: timedelta,
    stop: threading.Event,
    wait: Callable[[float], bool] | None = None,
) -> DeliveryOutcome | None:
    """Claims and sends a digest's resolve with the channel's retries.

    Returns:
        How it ended, or None when another replica holds its claim (or it just ended).

    Raises:
        Interrupted: the service is stopping; the resolve was given back (pending).
    """
    if not store.claim(target.id, owner, lease):
        return None
    notification = resolve_notification(target)

    def record(attempt: int, status: str, result: AttemptResult) -> None:
        store.record_attempt(
            alert_id=None,
            dedupe_key=notification.dedupe_key,
            channel=target.channel,
            kind=Kind.RESOLVE,
            attempt=attempt,
            status=status,
            http_status=result.http_status,
            error=result.error,
            delivery_id=target.id,
            end_state=END_STATES.get(status),
        )

    try:
        outcome = deliver(
            sender,
            notification,
            policy,
            record,
            stop=stop,
            first_attempt=target.attempts + 1,
            wait=wait,
        )
    except Interrupted:
        store.release(target.id, owner)
        raise
    DIGEST_RESOLVES.labels(target.channel, outcome.state.value).inc()
    if outcome.state is not DeliveryState.SENT:
        log.error("resolve of digest %s %s", notification.dedupe_key, outcome.summary())
    return outcome
