"""Exactly once through the batch path: whole batches recorded, claimed and sent side by side.

The handler runs on the real MariaDB against local HTTP receivers, as the consumer runner calls
it: redelivered and replayed batches send nothing twice, and a receiver failing in the middle
of a batch gets exactly the deliveries it failed again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from rbr_notifier.delivery import Interrupted
from rbr_notifier.dispatch import split_batch
from rbr_notifier.model import Kind
from rbr_notifier.store.batch import Known, independent
from rbr_notifier.store.deliveries import PlannedDelivery
from rbr_notifier.store.rows import AlertEvent
from rbr_runtime.kafka.consumer import Inbound
from rbr_schemas import Alert
from rbr_testing.http_receiver import HttpReceiver, Reply

Factory = Callable[..., Any]
MINUTE = 60.0


def hook(name: str, receiver: HttpReceiver, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "webhook", "url": f"{receiver.url}/{name}-SECRET", **extra}


def deliveries_seen(receiver: HttpReceiver) -> Counter[str]:
    """Returns how many requests each delivery id got."""
    return Counter(request.headers["x-rbr-delivery"] for request in receiver.requests)


def failed_first(receiver: HttpReceiver, statuses: list[int]) -> set[str]:
    """Returns the delivery ids whose first request was answered with a failure.

    `statuses` are the answers in the order the requests arrived (the receiver hands its
    scripted answers out in that order).
    """
    first: dict[str, int] = {}
    for request, status in zip(receiver.requests, statuses, strict=False):
        first.setdefault(request.headers["x-rbr-delivery"], status)
    return {delivery for delivery, status in first.items() if status != 200}


def test_a_firing_and_its_resolve_to_one_channel_go_in_order_the_rest_side_by_side() -> None:
    def planned(i: int, key: str, channel: str, kind: Kind = Kind.TRIGGER) -> PlannedDelivery:
        return PlannedDelivery(i, f"alert-{key}", key, channel, kind)

    batch = [
        planned(1, "a", "slack"),
        planned(2, "a", "hook"),
        planned(3, "b", "slack"),
        planned(4, "a", "slack", Kind.RESOLVE),
    ]

    singles, groups = split_batch(batch)

    assert [d.id for d in singles] == [2, 3]
    assert [[d.id for d in group] for group in groups] == [[1, 4]]


def test_events_touching_the_same_occurrences_are_recorded_one_by_one(
    make_alert: Callable[..., Alert],
) -> None:
    events = [
        AlertEvent("e1", make_alert("k:1", alert_id="id-1")),
        AlertEvent("e2", make_alert("k:2", alert_id="id-2")),
        AlertEvent("e3", make_alert("k:2", alert_id="id-3", state="resolved")),  # same key
        AlertEvent("e4", make_alert("k:4", alert_id="id-4")),
        AlertEvent("e5", make_alert("k:5", alert_id="id-5")),
    ]
    # id-4 was stored under dedupe key k:5 (an odd producer): e4 and e5 touch the same rows.
    known = Known(by_id={"id-4": SimpleNamespace(dedupe_key="k:5")})  # type: ignore[dict-item]

    assert independent(events, known) == [0]


def test_a_redelivered_or_replayed_batch_sends_nothing_twice(
    notifier_factory: Factory,
    http_receiver_factory: Callable[..., HttpReceiver],
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    one, two = http_receiver_factory(), http_receiver_factory()
    notifier = notifier_factory({"channels": [hook("one", one), hook("two", two)]}, workers=8)
    alerts = [make_alert(f"batch:{i}") for i in range(40)]
    batch = [to_inbound(alert) for alert in alerts]
    # In the same batch: a repeat of an alert, and the firing and resolve of another (which
    # resolved before it was sent: neither is sent).
    batch += [to_inbound(alerts[0]), to_inbound(make_alert("batch:1", state="resolved"))]

    notifier.handler(batch)
    notifier.handler(batch)  # the same offsets again (a rebalance before the commit)
    notifier.handler([to_inbound(alert) for alert in alerts])  # new offsets (a replay)

    for receiver in (one, two):
        seen = deliveries_seen(receiver)
        assert len(seen) == 39
        assert set(seen.values()) == {1}
    assert len(notifier.attempts()) == 78
    states = Counter((row.kind, row.state) for row in notifier.deliveries())
    assert states == {("trigger", "sent"): 78, ("trigger", "skipped"): 2, ("resolve", "skipped"): 2}


def test_a_receiver_failing_mid_batch_gets_exactly_the_failed_deliveries_again(
    notifier_factory: Factory,
    http_receiver_factory: Callable[..., HttpReceiver],
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    flaky, steady = http_receiver_factory(), http_receiver_factory()
    statuses = [200] * 6 + [503] * 4
    flaky.enqueue(*(Reply(status) for status in statuses))
    notifier = notifier_factory(
        {"channels": [hook("flaky", flaky), hook("steady", steady)]}, workers=8
    )
    batch = [to_inbound(make_alert(f"mid:{i}")) for i in range(30)]

    notifier.handler(batch)

    seen = deliveries_seen(flaky)
    failed = failed_first(flaky, statuses + [200] * len(flaky.requests))
    assert len(failed) >= 1
    assert len(seen) == 30
    assert {d for d, count in seen.items() if count > 1} == failed
    assert set(deliveries_seen(steady).values()) == {1}
    assert {row.state for row in notifier.deliveries()} == {"sent"}


def test_a_receiver_going_down_mid_batch_has_the_failed_ones_retried_later_and_only_them(
    notifier_factory: Factory,
    http_receiver_factory: Callable[..., HttpReceiver],
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    down = http_receiver_factory(Reply(503, b"maintenance"))
    down.enqueue(*(Reply(200) for _ in range(5)))
    schedule = {"initial": "1m", "max_interval": "10m", "max_age": "6h"}
    notifier = notifier_factory(
        {"channels": [hook("down", down, retry=schedule)]}, workers=8, notifier_max_attempts=2
    )
    batch = [to_inbound(make_alert(f"down:{i}")) for i in range(20)]

    notifier.handler(batch)  # returns: the waiting ones are the retry sweeper's

    delivered_first = {r.headers["x-rbr-delivery"] for r in down.requests[:5]}
    states = Counter(row.state for row in notifier.deliveries())
    assert states == {"sent": 5, "waiting": 15}
    down.respond(Reply(200))
    down.clear()
    notifier.clock.advance(10 * MINUTE)
    assert notifier.retries.run_once() == 15

    retried = deliveries_seen(down)
    assert len(retried) == 15
    assert set(retried.values()) == {1}
    assert not retried.keys() & delivered_first
    assert {row.state for row in notifier.deliveries()} == {"sent"}


def test_stopping_mid_batch_gives_every_claim_back_for_the_next_owner(
    notifier_factory: Factory,
    http_receiver_factory: Callable[..., HttpReceiver],
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    down, ok = http_receiver_factory(Reply(503)), http_receiver_factory()
    notifier = notifier_factory(
        {"channels": [hook("down", down), hook("ok", ok)]},
        workers=8,
        wait=lambda seconds: True,  # the notifier stops during the first pause between tries
    )
    batch = [to_inbound(make_alert(f"stop:{i}")) for i in range(10)]

    with pytest.raises(Interrupted):
        notifier.handler(batch)

    states = Counter((row.channel, row.state) for row in notifier.deliveries())
    assert states == {("down", "pending"): 10, ("ok", "sent"): 10}
    assert len(down.requests) == 1  # the channel's first delivery; the others were not tried
