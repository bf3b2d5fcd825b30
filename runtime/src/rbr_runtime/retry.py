"""The one retry policy: jittered exponential backoff, outages told apart by `is_outage`.

`backoff_delay` is the pause before a retry; `Backoff` paces a loop that retries until it
succeeds (a relay, a daily task); `retry_outages` calls a function again through outages a
bounded number of times (a database transaction) and lets anything else propagate at once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from rbr_runtime.errors import describe_error, is_outage

log = logging.getLogger(__name__)

T = TypeVar("T")


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Returns the pause before retry number `attempt` (from 1).

    `initial` doubled at each attempt, at most `maximum`, then spread by ±20% so replicas
    that failed together do not retry in step.
    """
    base = min(maximum, initial * 2.0 ** min(attempt - 1, 30))
    return float(base * random.uniform(0.8, 1.2))


class Backoff:
    """Paces a loop that retries until it succeeds: each failure in a row pauses longer."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        """Failures since the last success."""

    def failed(self) -> float:
        """Counts a failure; returns the pause before the next try."""
        self.failures += 1
        return self.pause()

    def pause(self) -> float:
        """Returns the pause the failures so far call for (0.0 when there were none)."""
        if not self.failures:
            return 0.0
        return backoff_delay(self.failures, self.initial, self.maximum)

    def succeeded(self) -> None:
        """Starts counting again from the first pause."""
        self.failures = 0


def retry_outages(
    action: Callable[[], T],
    *,
    attempts: int,
    initial: float,
    maximum: float,
    retryable: Callable[[BaseException], bool] = is_outage,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """Calls `action` until it returns, again after a pause when it failed with an outage.

    Args:
        action: what to run (a whole transaction: it is run again from the start).
        attempts: most calls in all.
        initial: pause after the first failure (doubled after each next one).
        maximum: longest pause.
        retryable: tells which errors are worth another call.
        sleep: waits (tests and event loops pass their own).

    Raises:
        Exception: at once what `retryable` rejects; the last failure after `attempts` calls.
    """
    for attempt in range(1, attempts):
        try:
            return action()
        except Exception as error:
            if not retryable(error):
                raise
            pause = backoff_delay(attempt, initial, maximum)
            log.info("retrying in %.2fs (attempt %d): %s", pause, attempt, describe_error(error))
            sleep(pause)
    return action()
