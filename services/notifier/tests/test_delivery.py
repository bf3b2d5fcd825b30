"""Bounded retries against a real HTTP receiver: what is retried, how long, when it stops."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from rbr_notifier.channels import parse_channels
from rbr_notifier.delivery import Interrupted, RetryPolicy, deliver
from rbr_notifier.metrics import DELIVERIES, labelled
from rbr_notifier.model import AlertState, AlertView, DeliveryState, Kind, Notification
from rbr_notifier.senders import Sender, build_sender
from rbr_notifier.senders.base import AttemptResult, retry_after_seconds
from rbr_schemas import Severity
from rbr_testing.http_receiver import HttpReceiver, Reply

NOTIFICATION = Notification(
    Kind.TRIGGER,
    "hook",
    alert=AlertView(
        alert_id="a-1",
        dedupe_key="bucket_unresponsive:b1",
        type="bucket_unresponsive",
        severity=Severity.HIGH,
        state=AlertState.FIRING,
        title="Bucket b1 is down",
        detail="",
        source="/rbr/poller",
        fired_at=datetime(2026, 11, 21, 9, 0, tzinfo=UTC),
    ),
)
POLICY = RetryPolicy(max_attempts=4, initial_backoff=0.5, max_backoff=4.0, retry_after_max=60.0)


@pytest.fixture
def sender(http_receiver: HttpReceiver) -> Iterator[Sender]:
    channels = parse_channels(
        {"channels": [{"name": "hook", "type": "webhook", "url": f"{http_receiver.url}/h"}]}
    )
    built = build_sender(channels.channels[0], default_timeout=2.0)
    yield built
    built.close()


class Log:
    def __init__(self) -> None:
        self.attempts: list[tuple[int, str, int | None]] = []
        self.pauses: list[float] = []

    def record(self, attempt: int, status: str, result: AttemptResult) -> None:
        self.attempts.append((attempt, status, result.http_status))

    def wait(self, seconds: float) -> bool:
        self.pauses.append(seconds)
        return False


def test_5xx_is_retried_until_it_works(http_receiver: HttpReceiver, sender: Sender) -> None:
    http_receiver.enqueue(Reply(503), Reply(502))
    log = Log()

    outcome = deliver(
        sender, NOTIFICATION, POLICY, log.record, stop=threading.Event(), wait=log.wait
    )

    assert outcome.state is DeliveryState.SENT
    assert log.attempts == [(1, "retrying", 503), (2, "retrying", 502), (3, "sent", 200)]
    assert len(http_receiver.requests) == 3
    # Exponential backoff with jitter (+-20%): ~0.5 s, then ~1 s.
    assert 0.4 <= log.pauses[0] <= 0.6
    assert 0.8 <= log.pauses[1] <= 1.2


def test_429_waits_at_least_retry_after(http_receiver: HttpReceiver, sender: Sender) -> None:
    http_receiver.enqueue(Reply(429, headers={"Retry-After": "9"}))
    log = Log()

    outcome = deliver(
        sender, NOTIFICATION, POLICY, log.record, stop=threading.Event(), wait=log.wait
    )

    assert outcome.state is DeliveryState.SENT
    assert log.pauses == [9.0]


def test_retry_after_is_capped() -> None:
    assert POLICY.pause(1, 3600.0) == 60.0


def test_retry_after_accepts_http_dates() -> None:
    now = datetime(2026, 11, 21, 9, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("Sat, 21 Nov 2026 09:00:30 GMT", now) == 30.0
    assert retry_after_seconds("soon", now) is None


def test_4xx_is_not_retried(http_receiver: HttpReceiver, sender: Sender) -> None:
    http_receiver.respond(Reply(400, b'{"error":"bad payload"}'))
    log = Log()

    outcome = deliver(
        sender, NOTIFICATION, POLICY, log.record, stop=threading.Event(), wait=log.wait
    )

    assert outcome.state is DeliveryState.REJECTED
    assert log.attempts == [(1, "rejected", 400)]
    assert len(http_receiver.requests) == 1
    assert "HTTP 400" in outcome.summary()


def test_gives_up_after_the_last_attempt(http_receiver: HttpReceiver, sender: Sender) -> None:
    http_receiver.respond(Reply(503, b"down"))
    log = Log()

    outcome = deliver(
        sender, NOTIFICATION, POLICY, log.record, stop=threading.Event(), wait=log.wait
    )

    assert outcome.state is DeliveryState.FAILED
    assert [status for _, status, _ in log.attempts] == ["retrying"] * 3 + ["failed"]
    assert len(log.pauses) == 3
    assert outcome.summary() == "gave up after 4 attempt(s), last: HTTP 503: down"


def test_a_replay_gets_a_fresh_budget_and_keeps_numbering(
    http_receiver: HttpReceiver, sender: Sender
) -> None:
    http_receiver.respond(Reply(503))
    log = Log()
    deliver(
        sender,
        NOTIFICATION,
        POLICY,
        log.record,
        stop=threading.Event(),
        wait=log.wait,
        first_attempt=5,
    )
    assert [attempt for attempt, _, _ in log.attempts] == [5, 6, 7, 8]


def test_stop_interrupts_the_pause(http_receiver: HttpReceiver, sender: Sender) -> None:
    http_receiver.respond(Reply(503))
    stop = threading.Event()
    log = Log()

    def stop_while_waiting(seconds: float) -> bool:
        stop.set()
        return True

    with pytest.raises(Interrupted):
        deliver(sender, NOTIFICATION, POLICY, log.record, stop=stop, wait=stop_while_waiting)
    assert log.attempts == [(1, "retrying", 503)]


def test_kept_metric_children_are_the_exported_ones() -> None:
    labels = {"channel": "kept-child", "kind": "trigger", "state": "sent"}
    before = REGISTRY.get_sample_value("rbr_notifier_deliveries_total", labels) or 0.0

    labelled(DELIVERIES, "kept-child", "trigger", "sent").inc()
    labelled(DELIVERIES, "kept-child", "trigger", "sent").inc()

    assert REGISTRY.get_sample_value("rbr_notifier_deliveries_total", labels) == before + 2
    assert labelled(DELIVERIES, "kept-child", "trigger", "sent") is DELIVERIES.labels(
        "kept-child", "trigger", "sent"
    )
