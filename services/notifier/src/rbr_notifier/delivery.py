"""Tries in a row of one notification on one channel, every try recorded.

Timeouts, connection errors, 408/425/429 and 5xx are tried again after an exponential,
jittered pause (at least the server's Retry-After, up to a cap); anything else the channel
refuses is permanent at once. A stop request cuts the pauses short (`Interrupted`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rbr_notifier.metrics import ATTEMPT_SECONDS, ATTEMPTS, labelled
from rbr_notifier.model import DeliveryState, Notification
from rbr_notifier.senders.base import AttemptResult, Outcome, Sender
from rbr_runtime.retry import backoff_delay

log = logging.getLogger(__name__)


class Interrupted(Exception):
    """The notifier is stopping; the notification was left for a later try."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to try."""

    max_attempts: int = 5
    initial_backoff: float = 1.0
    max_backoff: float = 30.0
    retry_after_max: float = 120.0

    def pause(self, attempt: int, retry_after: float | None) -> float:
        """Returns the pause after failed try number `attempt` (from 1)."""
        delay = backoff_delay(attempt, self.initial_backoff, self.max_backoff)
        if retry_after is None:
            return delay
        return max(delay, min(retry_after, self.retry_after_max))


class AttemptStatus:
    """Values of `notifications.status`."""

    SENT = "sent"
    RETRYING = "retrying"
    FAILED = "failed"
    REJECTED = "rejected"


END_STATES = {
    AttemptStatus.SENT: DeliveryState.SENT,
    AttemptStatus.FAILED: DeliveryState.FAILED,
    AttemptStatus.REJECTED: DeliveryState.REJECTED,
}
"""The delivery state a try's status ends in (a retrying try ends nothing)."""

AttemptRecorder = Callable[[int, str, AttemptResult], None]
"""Records try number n with its status and result (a row in `notifications`)."""


@dataclass(frozen=True)
class DeliveryOutcome:
    """How a notification ended: sent, failed (out of tries) or rejected (permanent)."""

    state: DeliveryState
    attempts: int
    last: AttemptResult

    def summary(self) -> str:
        """Returns a short, secret-free description, e.g. for the DLQ reason."""
        if self.state is DeliveryState.SENT:
            return f"sent after {self.attempts} attempt(s)"
        if self.state is DeliveryState.REJECTED:
            return f"rejected permanently: {self.last.describe()}"
        return f"gave up after {self.attempts} attempt(s), last: {self.last.describe()}"


def attempt_once(sender: Sender, notification: Notification) -> AttemptResult:
    """Makes one try; a sender bug becomes a retryable result rather than an outage."""
    started = time.monotonic()
    try:
        result = sender.send(notification)
    except Exception as error:  # noqa: BLE001 - a bug in one sender must not stall the consumer
        log.error(
            "channel %s: unexpected %s while sending: %s",
            sender.name,
            type(error).__name__,
            sender.scrub(str(error)),
        )
        result = AttemptResult(Outcome.RETRY, error=f"internal error: {type(error).__name__}")
    labelled(ATTEMPT_SECONDS, sender.name).observe(time.monotonic() - started)
    labelled(ATTEMPTS, sender.name, result.outcome.value).inc()
    return result


def deliver(
    sender: Sender,
    notification: Notification,
    policy: RetryPolicy,
    record: AttemptRecorder,
    *,
    stop: threading.Event,
    first_attempt: int = 1,
    wait: Callable[[float], bool] | None = None,
    tried: AttemptResult | None = None,
) -> DeliveryOutcome:
    """Tries to deliver until it worked, was refused, or the tries ran out.

    Args:
        sender: the channel's sender.
        notification: what to send.
        policy: tries and pauses.
        record: called after every try (number, status, result).
        stop: set when the service stops; pauses end early and `Interrupted` is raised.
        first_attempt: the number recorded for the first try: tries made before (a replay
            from the DLQ) keep their numbers, and the replay gets a fresh budget of tries.
        wait: waits the given seconds, True if interrupted (stop.wait by default; tests
            pass a recorder).
        tried: the result of the first try, made already (a batch sends its first tries
            side by side); it is recorded and classified like a try made here.

    Raises:
        Interrupted: the service is stopping; the notification was not delivered.
    """
    pause = wait or stop.wait
    attempt = first_attempt
    while True:
        if stop.is_set() and attempt > first_attempt:
            raise Interrupted(f"stopping before attempt {attempt}")
        made, tried = tried, None
        result = made or attempt_once(sender, notification)
        last_try = attempt - first_attempt + 1 >= policy.max_attempts
        if result.outcome is Outcome.OK:
            record(attempt, AttemptStatus.SENT, result)
            return DeliveryOutcome(DeliveryState.SENT, attempt, result)
        if result.outcome is Outcome.PERMANENT:
            record(attempt, AttemptStatus.REJECTED, result)
            return DeliveryOutcome(DeliveryState.REJECTED, attempt, result)
        record(attempt, AttemptStatus.FAILED if last_try else AttemptStatus.RETRYING, result)
        if last_try:
            return DeliveryOutcome(DeliveryState.FAILED, attempt, result)
        delay = policy.pause(attempt, result.retry_after)
        log.info(
            "channel %s: attempt %d failed (%s), retrying in %.1fs",
            sender.name,
            attempt,
            result.describe(),
            delay,
        )
        if pause(delay):
            raise Interrupted(f"stopping during the pause after attempt {attempt}")
        attempt += 1
