"""The alerts handler on the real MariaDB with local webhook receivers (no broker needed).

Filters, dedupe, resolve, acknowledgement, throttling with digests, retries then rejection
(what the consumer runner turns into a DLQ message), and idempotent replays.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from rbr_notifier.model import AlertState
from rbr_notifier.store.alerts import AlertEvent
from rbr_runtime.db.tables import notifier_deliveries
from rbr_runtime.errors import TransientError
from rbr_runtime.kafka.consumer import Inbound
from rbr_schemas import Alert, utcnow
from rbr_testing.http_receiver import HttpReceiver, Reply
from rbr_testing.waiting import wait_for

Factory = Callable[..., Any]


def hook(name: str, receiver: HttpReceiver, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "webhook", "url": f"{receiver.url}/{name}", **extra}


def kinds(receiver: HttpReceiver) -> list[str]:
    return [request.json()["kind"] for request in receiver.requests]


def keys(receiver: HttpReceiver) -> list[str]:
    return [request.json()["alert"]["dedupe_key"] for request in receiver.requests]


def test_filters_decide_which_channels_hear_an_alert(
    notifier_factory: Factory,
    http_receiver_factory: Callable[..., HttpReceiver],
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    everything, critical, summaries, prod = (http_receiver_factory() for _ in range(4))
    notifier = notifier_factory(
        {
            "channels": [
                hook("everything", everything),
                hook("critical", critical, filters={"min_severity": "critical"}),
                hook("summaries", summaries, filters={"types": ["daily_summary"]}),
                hook("prod", prod, filters={"buckets": ["prod-*"]}),
            ]
        }
    )
    high = make_alert("bucket_unresponsive:rustbucket-a1", severity="high")
    summary = make_alert(
        "daily_summary:2026-11-21", type="daily_summary", severity="info", bucket=None
    )
    prod_critical = make_alert(
        "analysis:prod-3:login", severity="critical", bucket="prod-3", type="analysis_finding"
    )

    notifier.handler([to_inbound(high), to_inbound(summary), to_inbound(prod_critical)])

    assert sorted(keys(everything)) == sorted(
        [high.dedupe_key, summary.dedupe_key, prod_critical.dedupe_key]
    )
    assert keys(critical) == [prod_critical.dedupe_key]
    assert keys(summaries) == [summary.dedupe_key]
    assert keys(prod) == [prod_critical.dedupe_key]


def test_a_firing_alert_notifies_once_per_dedupe_key(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    notifier = notifier_factory({"channels": [hook("ops", http_receiver)]})
    firing = make_alert()
    message = to_inbound(firing)

    notifier.handler([message])
    notifier.handler([message])  # redelivery of the same message
    notifier.handler([to_inbound(firing)])  # the producer sent the same firing again
    later = make_alert(
        alert_id=str(uuid.uuid4()), occurred_at=firing.occurred_at + timedelta(hours=1)
    )
    notifier.handler([to_inbound(later)])  # a new occurrence id while the first is open

    assert kinds(http_receiver) == ["trigger"]
    (row,) = notifier.store.alerts.list_alerts()
    assert row.state == "firing"
    assert row.repeats == 2
    assert row.last_seen_at == later.occurred_at
    assert len(notifier.attempts()) == 1


def test_resolve_goes_only_to_channels_notified_of_the_firing(
    notifier_factory: Factory,
    http_receiver_factory: Callable[..., HttpReceiver],
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    ops, pager = http_receiver_factory(), http_receiver_factory()
    notifier = notifier_factory(
        {"channels": [hook("ops", ops), hook("pager", pager, filters={"min_severity": "critical"})]}
    )
    firing = make_alert(severity="high")
    resolved = make_alert(state="resolved", occurred_at=firing.occurred_at + timedelta(minutes=9))

    notifier.handler([to_inbound(firing)])
    notifier.handler([to_inbound(resolved)])
    notifier.handler([to_inbound(firing), to_inbound(resolved)])  # replay of the topic

    assert kinds(ops) == ["trigger", "resolve"]
    assert pager.requests == []
    resolve_body = ops.requests[1].json()
    assert resolve_body["alert"]["state"] == "resolved"
    assert resolve_body["alert"]["resolved_at"] == resolved.occurred_at.isoformat()
    (row,) = notifier.store.alerts.list_alerts()
    assert (row.state, row.resolved_at) == ("resolved", resolved.occurred_at)


def test_an_acknowledged_alert_is_not_notified_again_but_its_resolve_is(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    notifier = notifier_factory({"channels": [hook("ops", http_receiver)]}, notifier_reopen_after=0)
    firing = make_alert()
    notifier.handler([to_inbound(firing)])

    assert notifier.store.alerts.acknowledge(firing.dedupe_key, "alice", notifier.clock()) == 1
    notifier.handler([to_inbound(firing)])
    much_later = firing.occurred_at + timedelta(days=3)
    notifier.handler([to_inbound(make_alert(alert_id="new-id", occurred_at=much_later))])
    notifier.handler([to_inbound(make_alert(state="resolved", occurred_at=much_later))])

    assert kinds(http_receiver) == ["trigger", "resolve"]
    (row,) = notifier.store.alerts.list_alerts()
    assert (row.acknowledged_by, row.state) == ("alice", "resolved")


def test_a_stale_open_alert_is_superseded_by_a_new_occurrence(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    notifier = notifier_factory(
        {"channels": [hook("ops", http_receiver)]}, notifier_reopen_after=3600
    )
    first = make_alert("analysis:b1:ssh-login", type="analysis_finding", alert_id="occ-1")
    second = make_alert(
        "analysis:b1:ssh-login",
        type="analysis_finding",
        alert_id="occ-2",
        occurred_at=first.occurred_at + timedelta(hours=5),
    )

    notifier.handler([to_inbound(first)])
    notifier.handler([to_inbound(second)])

    assert kinds(http_receiver) == ["trigger", "trigger"]
    rows = {row.alert_id: row for row in notifier.store.alerts.list_alerts()}
    assert rows["occ-1"].state == "resolved"
    assert rows["occ-1"].resolved_by == "superseded"
    assert rows["occ-2"].state == "firing"


def test_a_burst_is_throttled_and_the_rest_folded_into_one_digest(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    document = {"channels": [hook("ops", http_receiver, throttle={"max": 3, "window": 60})]}
    notifier = notifier_factory(document)
    burst = [make_alert(f"analysis:b{i}:finding", bucket=f"b{i}") for i in range(10)]

    notifier.handler([to_inbound(alert) for alert in burst])
    assert kinds(http_receiver) == ["trigger"] * 3
    notifier.store.alerts.acknowledge(burst[9].dedupe_key, "bob", notifier.clock())
    notifier.handler([to_inbound(make_alert(burst[8].dedupe_key, state="resolved", bucket="b8"))])
    assert notifier.sweeper.run_once() == 0  # the window has not ended yet

    # The notifier restarts: nothing folded is lost, the new instance sends the digest.
    restarted = notifier_factory(document)
    restarted.clock.advance(60)
    assert restarted.sweeper.run_once() == 1
    assert restarted.sweeper.run_once() == 0

    assert kinds(http_receiver) == ["trigger"] * 3 + ["digest"]
    digest = http_receiver.requests[-1].json()["digest"]
    sent = {request.json()["alert"]["dedupe_key"] for request in http_receiver.requests[:3]}
    folded = [(item["kind"], item["alert"]["dedupe_key"]) for item in digest["items"]]
    expected = [("trigger", a.dedupe_key) for a in burst[:9] if a.dedupe_key not in sent]
    assert folded == [*expected, ("resolve", burst[8].dedupe_key)]
    assert digest["total"] == 7
    states = sorted(row.state for row in restarted.deliveries())
    assert states == ["digested"] * 7 + ["sent"] * 3 + ["skipped"]
    assert restarted.attempts()[-1].kind == "digest"


def test_a_resolve_is_never_throttled_while_firings_still_are(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    document = {"channels": [hook("pager", http_receiver, throttle={"max": 1, "window": 60})]}
    notifier = notifier_factory(document)
    first, second = make_alert("k:first"), make_alert("k:second")

    notifier.handler([to_inbound(first)])
    notifier.handler([to_inbound(second)])  # the window is full: folded
    notifier.handler([to_inbound(make_alert("k:first", state="resolved"))])
    notifier.handler([to_inbound(make_alert("k:third"))])  # still full: folded

    # The resolve of a firing the channel heard goes out at once, or its incident stays open.
    assert list(zip(kinds(http_receiver), keys(http_receiver), strict=True)) == [
        ("trigger", "k:first"),
        ("resolve", "k:first"),
    ]
    notifier.clock.advance(60)
    assert notifier.sweeper.run_once() == 1
    digest = http_receiver.requests[-1].json()["digest"]
    assert [item["alert"]["dedupe_key"] for item in digest["items"]] == ["k:second", "k:third"]


def test_a_disabled_channel_gets_no_digest(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    channel = hook("ops", http_receiver, throttle={"max": 1, "window": 60})
    notifier = notifier_factory({"channels": [channel]})
    notifier.handler([to_inbound(make_alert(f"k:{i}")) for i in range(3)])
    assert kinds(http_receiver) == ["trigger"]

    # The operator disables the channel and restarts before the window ends.
    restarted = notifier_factory({"channels": [{**channel, "enabled": False}]})
    restarted.clock.advance(60)
    assert restarted.sweeper.run_once() == 0

    assert kinds(http_receiver) == ["trigger"]
    folded = [row for row in restarted.deliveries() if row.state != "sent"]
    assert [(row.state, row.detail) for row in folded] == [("skipped", "channel disabled")] * 2
    assert restarted.sweeper.run_once() == 0  # nothing left waiting


def test_an_unreachable_channel_without_retry_schedule_rejects_the_alert_after_the_last_try(
    notifier_factory: Factory,
    http_receiver_factory: Callable[..., HttpReceiver],
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    down = http_receiver_factory(Reply(503, b"maintenance"))
    ok = http_receiver_factory()
    notifier = notifier_factory(
        {"channels": [hook("down", down, retry=False), hook("ok", ok)]}, notifier_max_attempts=3
    )
    firing = make_alert()
    message = to_inbound(firing)

    (rejection,) = notifier.rejected([message])

    assert rejection.message is message
    assert not rejection.counts_toward_cap  # the channel's fault, not ours
    reason = rejection.reason
    assert "channel down (webhook)" in reason
    assert "HTTP 503" in reason
    assert down.url not in reason
    assert "127.0.0.1" not in reason
    assert len(down.requests) == 3
    assert kinds(ok) == ["trigger"]
    attempts = [(a.channel, a.attempt, a.status, a.http_status) for a in notifier.attempts()]
    assert sorted(attempts) == [
        ("down", 1, "retrying", 503),
        ("down", 2, "retrying", 503),
        ("down", 3, "failed", 503),
        ("ok", 1, "sent", 200),
    ]
    assert len(notifier.pauses) == 2

    # Replayed from the DLQ (a new offset) once the channel is back: only it is retried.
    down.respond(Reply(200))
    notifier.handler([to_inbound(firing)])
    assert len(down.requests) == 4
    assert kinds(ok) == ["trigger"]
    assert notifier.attempts()[-1].attempt == 4


def test_a_dead_channel_without_retry_schedule_costs_one_retry_sequence_per_batch(
    notifier_factory: Factory,
    http_receiver_factory: Callable[..., HttpReceiver],
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    down, ok = http_receiver_factory(Reply(503)), http_receiver_factory()
    notifier = notifier_factory(
        {"channels": [hook("down", down, retry=False), hook("ok", ok)]},
        workers=1,
        notifier_max_attempts=3,
    )
    burst = [to_inbound(make_alert(f"k:{i}")) for i in range(5)]

    rejections = notifier.rejected(burst)

    assert len(down.requests) == 3  # the first alert's tries; the other four were not tried
    assert len(ok.requests) == 5
    assert [r.message for r in rejections] == burst  # each rejected, in one pass
    assert all("channel down" in r.reason and not r.counts_toward_cap for r in rejections)
    details = [row.detail for row in notifier.deliveries() if row.channel == "down"]
    assert sum("not tried" in (detail or "") for detail in details) == 4


def test_a_4xx_is_rejected_at_once(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    http_receiver.respond(Reply(401, b"bad token"))
    notifier = notifier_factory({"channels": [hook("siem", http_receiver)]})

    (rejection,) = notifier.rejected([to_inbound(make_alert())])

    assert "rejected permanently: HTTP 401: bad token" in rejection.reason

    assert len(http_receiver.requests) == 1
    (attempt,) = notifier.attempts()
    assert (attempt.status, attempt.http_status) == ("rejected", 401)
    assert notifier.pauses == []


def test_alert_id_longer_than_the_table_allows_is_rejected(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    notifier = notifier_factory({"channels": [hook("ops", http_receiver)]})
    good = make_alert("k:good")
    bad = make_alert("k:bad", alert_id="x" * 65)

    messages = [to_inbound(good), to_inbound(bad)]
    (rejection,) = notifier.rejected(messages)

    assert rejection.message is messages[1]
    assert "alert_id" in rejection.reason
    assert rejection.counts_toward_cap  # our own fault: a run of them stops the consumer

    assert keys(http_receiver) == ["k:good"]
    assert [row.alert_id for row in notifier.store.alerts.list_alerts()] == [good.alert_id]


def test_resolve_of_an_unknown_alert_is_recorded_and_notifies_nobody(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    notifier = notifier_factory({"channels": [hook("ops", http_receiver)]})
    notifier.handler([to_inbound(make_alert(state="resolved"))])
    assert http_receiver.requests == []
    (row,) = notifier.store.alerts.list_alerts(state=AlertState.RESOLVED)
    assert row.resolved_by == "event"


def test_a_delivery_another_replica_is_sending_is_not_sent_twice(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    document = {"channels": [hook("pager", http_receiver)]}
    paused, resume = threading.Event(), threading.Event()

    def hold(_: float) -> bool:
        paused.set()
        resume.wait(20)
        return False

    first = notifier_factory(document, owner="replica-a", wait=hold)
    second = notifier_factory(document, owner="replica-b")
    http_receiver.enqueue(Reply(503))
    message = to_inbound(make_alert())

    with ThreadPoolExecutor(1) as pool:
        # Replica A is between two tries when the group gives the partition to replica B.
        running = pool.submit(first.handler, [message])
        wait_for(paused.is_set, message="replica A's retry pause")
        with pytest.raises(TransientError, match="being sent by another notifier replica"):
            second.handler([message])
        assert len(http_receiver.requests) == 1
        resume.set()
        running.result(timeout=20)

    second.handler([message])  # B's retry of the batch finds it sent and commits
    assert kinds(http_receiver) == ["trigger", "trigger"]  # A's 503, then A's success
    (row,) = second.deliveries()
    assert (row.state, row.claimed_by, row.attempts) == ("sent", "replica-a", 2)


def test_a_stale_claim_of_a_dead_replica_is_taken_over(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    document = {"channels": [hook("pager", http_receiver)]}
    notifier = notifier_factory(document, owner="replica-b")
    message = to_inbound(make_alert())
    (planned,) = notifier.store.alerts.record_events(
        [notifier_event(message)], lambda _: ["pager"], reopen_after=0
    )[0][1]
    lease = timedelta(minutes=10)
    assert notifier.store.deliveries.claim(planned.id, "replica-a", lease)  # then replica A died
    with pytest.raises(TransientError):
        notifier.handler([message])
    assert http_receiver.requests == []

    with notifier.store.engine.begin() as connection:
        connection.execute(
            update(notifier_deliveries).values(claimed_at=utcnow() - timedelta(hours=1))
        )
    notifier.handler([message])

    assert kinds(http_receiver) == ["trigger"]
    (row,) = notifier.deliveries()
    assert (row.state, row.claimed_by) == ("sent", "replica-b")


def notifier_event(message: Inbound[Any]) -> AlertEvent:
    assert message.event is not None
    return AlertEvent(message.event.id, message.data)


def test_a_daily_summary_is_closed_once_delivered_and_no_resolve_is_sent(
    notifier_factory: Factory,
    http_receiver_factory: Callable[..., HttpReceiver],
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    pager, down = http_receiver_factory(), http_receiver_factory(Reply(503))
    notifier = notifier_factory({"channels": [hook("pager", pager), hook("down", down)]})
    summary = make_alert("daily_summary:2026-11-21", type="daily_summary", severity="info")

    # One channel down: the summary stays open while it waits for a retry there.
    notifier.handler([to_inbound(summary)])
    assert notifier.store.alerts.list_alerts()[0].state == "firing"

    down.respond(Reply(200))
    notifier.clock.advance(60)
    assert notifier.retries.run_once() == 1

    (row,) = notifier.store.alerts.list_alerts()
    assert (row.state, row.resolved_by) == ("resolved", "one-shot")
    assert kinds(pager) == ["trigger"]
    assert kinds(down)[-1] == "trigger"
    notifier.handler([to_inbound(summary)])  # a late redelivery changes nothing
    assert kinds(pager) == ["trigger"]
    assert {(r.kind, r.state) for r in notifier.deliveries()} == {("trigger", "sent")}


def test_a_channel_test_goes_to_its_channel_only_and_is_closed_once_sent(
    notifier_factory: Factory,
    http_receiver_factory: Callable[..., HttpReceiver],
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    pager, everything = http_receiver_factory(), http_receiver_factory()
    notifier = notifier_factory({"channels": [hook("pager", pager), hook("all", everything)]})
    test = make_alert(
        "test:pager:t1", alert_id="t1", type="test", severity="info", context={"channel": "pager"}
    )
    nowhere = make_alert(
        "test:gone:t2", alert_id="t2", type="test", severity="info", context={"channel": "gone"}
    )

    notifier.handler([to_inbound(test), to_inbound(nowhere)])

    assert keys(pager) == ["test:pager:t1"]
    assert keys(everything) == []
    assert {(r.alert_id, r.channel, r.state) for r in notifier.deliveries()} == {
        ("t1", "pager", "sent")
    }
    states = {
        row.alert_id: (row.state, row.resolved_by) for row in notifier.store.alerts.list_alerts()
    }
    assert states["t1"] == ("resolved", "one-shot")
