"""The one retry policy: outages retried with growing, jittered pauses; faults at once."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from rbr_runtime.retry import Backoff, backoff_delay, retry_outages


def failing(errors: Sequence[Exception]) -> tuple[list[int], Callable[[], str]]:
    """Returns (calls, action): the action raises the errors in turn, then returns "done"."""
    calls: list[int] = []

    def action() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "done"

    return calls, action


def deadlock() -> OperationalError:
    return OperationalError("UPDATE buckets", {}, Exception("(1213) Deadlock found"))


def within_jitter(pauses: Sequence[float], bases: Sequence[float]) -> bool:
    return all(0.8 * b <= p <= 1.2 * b for p, b in zip(pauses, bases, strict=True))


def test_an_outage_is_retried_with_growing_pauses_until_the_call_succeeds() -> None:
    calls, action = failing([deadlock(), deadlock(), ConnectionError("refused")])
    pauses: list[float] = []

    result = retry_outages(action, attempts=5, initial=0.02, maximum=0.05, sleep=pauses.append)

    assert result == "done"
    assert len(calls) == 4
    assert within_jitter(pauses, [0.02, 0.04, 0.05]), "doubling, never beyond the maximum"


def test_a_fault_is_not_retried_and_the_last_outage_propagates() -> None:
    duplicate = IntegrityError("INSERT INTO buckets", {}, Exception("(1062) Duplicate entry"))
    calls, action = failing([duplicate])
    with pytest.raises(IntegrityError):
        retry_outages(action, attempts=5, initial=0.01, maximum=0.1, sleep=lambda _s: None)
    assert len(calls) == 1

    calls, action = failing([deadlock()] * 3)
    with pytest.raises(OperationalError):
        retry_outages(action, attempts=3, initial=0.01, maximum=0.1, sleep=lambda _s: None)
    assert len(calls) == 3


def test_a_loop_backs_off_while_failing_and_starts_over_after_a_success() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0)
    assert backoff.pause() == 0.0

    pauses = [backoff.failed() for _ in range(6)]

    assert within_jitter(pauses, [1, 2, 4, 8, 8, 8])
    backoff.succeeded()
    assert backoff.failures == 0
    assert within_jitter([backoff.failed()], [1])


def test_replicas_that_failed_together_do_not_retry_in_step() -> None:
    delays = {backoff_delay(3, 0.5, 30.0) for _ in range(50)}
    assert len(delays) > 1
    assert within_jitter(sorted(delays), [2.0] * len(delays))
