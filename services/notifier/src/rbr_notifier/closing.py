"""Resolving digests: closing the incident a digest opened once all its alerts resolved.

On PagerDuty and Opsgenie a digest opens an incident (alert) of its own, under the key
`rbr-digest:<window start>:<channel>`. The folded alerts' own resolves address keys that never
opened anything, so they are not sent; instead, once every alert the digest carried has
resolved, the digest's resolve is sent under its key, once. It is a `notifier_deliveries` row
(see `NotifierStore.plan_digest_resolve`), claimed before sending like any delivery, so two
replicas, or the consumer and the digest sweeper, never both send it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
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
from rbr_notifier.repository import DigestResolve, NotifierStore
from rbr_notifier.senders.base import AttemptResult, Sender

log = logging.getLogger(__name__)


def resolve_notification(target: DigestResolve) -> Notification:
    """Returns the resolve of a digest: the digest's key, how many alerts it carried."""
    digest = Digest(target.window_start, target.window_end, items=(), total=target.total)
    return Notification(Kind.RESOLVE, target.channel, digest=digest)


def send_digest_resolve(
    store: NotifierStore,
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
