"""A channel that is down: deliveries wait on its retry schedule, in order, and are sent once.

The handler and the retry sweeper run on the real MariaDB against local HTTP receivers; the
schedule is reckoned on the tests' settable clock, so hours of waiting take no time. (The
whole service against the broker, with a real outage: `test_service.py`.)
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from rbr_notifier.channels import parse_channels
from rbr_notifier.retry_schedule import DEFAULT_SCHEDULES, Schedule, schedule_of
from rbr_runtime.db.tables import notifier_deliveries
from rbr_runtime.kafka.consumer import Inbound
from rbr_schemas import Alert, utcnow
from rbr_testing.http_receiver import HttpReceiver, Reply

from .conftest import T0

Factory = Callable[..., Any]
MINUTE = 60.0


def hook(name: str, receiver: HttpReceiver, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "webhook", "url": f"{receiver.url}/{name}-SECRET", **extra}


def sent(receiver: HttpReceiver) -> list[tuple[str, str, str]]:
    """Returns what a receiver got, as (kind, dedupe key, alert id)."""
    bodies = [request.json() for request in receiver.requests]
    return [(b["kind"], b["alert"]["dedupe_key"], b["alert"]["alert_id"]) for b in bodies]


def states(notifier: Any, channel: str) -> list[tuple[str, str, str]]:
    return [(r.alert_id, r.kind, r.state) for r in notifier.deliveries() if r.channel == channel]


def test_a_delivery_the_channel_did_not_take_waits_and_is_retried_until_it_arrives(
    notifier_factory: Factory,
    http_receiver_factory: Callable[..., HttpReceiver],
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    down, ok = http_receiver_factory(Reply(503, b"maintenance")), http_receiver_factory()
    schedule = {"initial": "1m", "max_interval": "10m", "max_age": "6h"}
    document = {"channels": [hook("down", down, retry=schedule), hook("ok", ok)]}
    notifier = notifier_factory(document, notifier_max_attempts=2)
    firing = make_alert()

    notifier.handler([to_inbound(firing)])  # returns: the alert's offset can be committed

    assert len(down.requests) == 2
    assert [kind for kind, _, _ in sent(ok)] == ["trigger"]
    (waiting,) = [r for r in notifier.deliveries() if r.channel == "down"]
    assert waiting.state == "waiting"
    assert T0 + timedelta(seconds=48) <= waiting.next_attempt_at <= T0 + timedelta(seconds=72)
    assert notifier.store.deliveries.waiting_counts() == {"down": 1}
    notifier.clock.advance(40)
    assert notifier.retries.run_once() == 0  # not due yet
    notifier.clock.advance(40)
    assert notifier.retries.run_once() == 1  # the first retry: still down
    assert len(down.requests) == 3
    (waiting,) = [r for r in notifier.deliveries() if r.channel == "down"]
    assert waiting.next_attempt_at >= notifier.clock() + timedelta(seconds=48)  # waits grow

    # The notifier restarts meanwhile, the channel comes back: the new instance sends it.
    down.respond(Reply(200))
    restarted = notifier_factory(document, notifier_max_attempts=2, owner="replica-2")
    restarted.clock.advance(10 * MINUTE)
    assert restarted.retries.run_once() == 1
    restarted.clock.advance(6 * 60 * MINUTE)
    assert restarted.retries.run_once() == 0

    assert sent(down) == [("trigger", firing.dedupe_key, firing.alert_id)] * 4
    attempts = [(a.attempt, a.status) for a in restarted.attempts() if a.channel == "down"]
    assert attempts == [(1, "retrying"), (2, "retrying"), (3, "retrying"), (4, "sent")]
    assert states(restarted, "down") == [(firing.alert_id, "trigger", "sent")]
    assert restarted.store.deliveries.waiting_counts() == {}
    assert restarted.store.deliveries.given_up_messages() == []


def test_a_resolve_and_a_new_occurrence_wait_behind_the_firing_and_keep_their_order(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    http_receiver.respond(Reply(503))
    notifier = notifier_factory(
        {"channels": [hook("pager", http_receiver, retry={"initial": 30})]},
        notifier_max_attempts=1,
    )
    later = T0 + timedelta(minutes=5)
    firing = make_alert("k:1", alert_id="occ-1")
    resolved = make_alert("k:1", alert_id="occ-1", state="resolved", occurred_at=later)
    again = make_alert("k:1", alert_id="occ-2", occurred_at=later + timedelta(minutes=5))

    notifier.handler([to_inbound(firing)])
    notifier.handler([to_inbound(resolved)])
    notifier.handler([to_inbound(again)])

    assert len(http_receiver.requests) == 1  # only the first firing was tried
    assert states(notifier, "pager") == [
        ("occ-1", "trigger", "waiting"),
        ("occ-1", "resolve", "waiting"),
        ("occ-2", "trigger", "waiting"),
    ]
    http_receiver.respond(Reply(200))
    for _ in range(4):
        notifier.clock.advance(MINUTE)
        notifier.retries.run_once()

    assert sent(http_receiver)[1:] == [
        ("trigger", "k:1", "occ-1"),
        ("resolve", "k:1", "occ-1"),
        ("trigger", "k:1", "occ-2"),
    ]
    assert {state for _, _, state in states(notifier, "pager")} == {"sent"}


def test_other_alerts_and_channels_keep_flowing_while_a_channel_is_down(
    notifier_factory: Factory,
    http_receiver_factory: Callable[..., HttpReceiver],
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    down, ok = http_receiver_factory(Reply(503)), http_receiver_factory()
    notifier = notifier_factory(
        {"channels": [hook("down", down), hook("ok", ok)]}, workers=1, notifier_max_attempts=3
    )
    alerts = [make_alert(f"k:{i}") for i in range(10)]

    notifier.handler([to_inbound(alert) for alert in alerts[:5]])
    notifier.handler([to_inbound(alert) for alert in alerts[5:]])  # a later batch

    assert len(ok.requests) == 10
    # The first alert's tries in a row; the other nine wait for the channel's next retry.
    assert len(down.requests) == 3
    rows = [r for r in notifier.deliveries() if r.channel == "down"]
    assert [r.state for r in rows] == ["waiting"] * 10
    assert sum("not tried" in r.detail for r in rows) == 9
    assert len({r.next_attempt_at for r in rows}) == 1  # they come back together

    down.respond(Reply(200))
    notifier.clock.advance(10 * MINUTE)
    assert notifier.retries.run_once() == 10

    assert sorted(key for _, key, _ in sent(down)[3:]) == sorted(a.dedupe_key for a in alerts)
    assert {r.state for r in notifier.deliveries()} == {"sent"}


def test_when_the_schedule_runs_out_the_delivery_is_given_up_and_its_message_kept_for_the_dlq(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    http_receiver.respond(Reply(503, b"maintenance"))
    schedule = {"initial": 10, "max_interval": 20, "max_age": "1m"}
    notifier = notifier_factory(
        {"channels": [hook("siem", http_receiver, retry=schedule)]}, notifier_max_attempts=1
    )
    first, second = make_alert("k:a"), make_alert("k:b")
    messages = [to_inbound(first), to_inbound(second)]
    notifier.handler(messages)
    notifier.handler([to_inbound(make_alert("k:a", state="resolved"))])  # waits behind k:a

    for _ in range(10):
        notifier.clock.advance(25)
        notifier.retries.run_once()

    rows = {(r.alert_id, r.kind): r for r in notifier.deliveries()}
    trigger_a = rows[first.alert_id, "trigger"]
    assert trigger_a.state == "failed"
    assert trigger_a.detail.startswith("channel siem (webhook): gave up after ")
    assert "attempt(s) over 1m, last: HTTP 503: maintenance" in trigger_a.detail
    assert rows[second.alert_id, "trigger"].state == "failed"
    resolve_a = rows[first.alert_id, "resolve"]
    assert resolve_a.state == "skipped"
    assert "firing could not be delivered" in resolve_a.detail
    given_up = notifier.store.deliveries.given_up_messages()
    assert [g.message.value for g in given_up] == [m.value for m in messages]
    assert [g.message.key for g in given_up] == [b"k:a", b"k:b"]
    assert all("channel siem (webhook)" in g.reason for g in given_up)
    assert sum("gave up on the trigger of k:a" in r.message for r in caplog.records) == 1
    assert "SECRET" not in caplog.text
    assert "SECRET" not in " ".join(g.reason for g in given_up)
    assert {a.state for a in notifier.store.alerts.list_alerts()} == {"firing", "resolved"}

    # `rbr dlq replay alerts` puts k:b back on the topic once the channel is fixed.
    http_receiver.respond(Reply(200))
    tries = len(http_receiver.requests)
    notifier.handler([to_inbound(second)])
    notifier.retries.run_once()
    assert sent(http_receiver)[tries:] == [("trigger", "k:b", second.alert_id)]
    assert [g.message.key for g in notifier.store.deliveries.given_up_messages()] == [b"k:a"]


def test_a_firing_acknowledged_while_it_waits_is_dropped_with_its_resolve(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    http_receiver.respond(Reply(503))
    notifier = notifier_factory({"channels": [hook("ops", http_receiver)]}, notifier_max_attempts=1)
    firing = make_alert()
    notifier.handler([to_inbound(firing)])
    notifier.store.alerts.acknowledge(firing.dedupe_key, "alice", notifier.clock())
    notifier.handler([to_inbound(make_alert(state="resolved"))])

    http_receiver.respond(Reply(200))
    for _ in range(3):
        notifier.clock.advance(10 * MINUTE)
        notifier.retries.run_once()

    assert len(http_receiver.requests) == 1  # the first failed try only
    assert [(kind, state) for _, kind, state in states(notifier, "ops")] == [
        ("trigger", "skipped"),
        ("resolve", "skipped"),
    ]


def test_two_replicas_retry_a_waiting_delivery_once(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    http_receiver.respond(Reply(503))
    document = {"channels": [hook("pager", http_receiver)]}
    replicas = [
        notifier_factory(document, owner=f"replica-{n}", notifier_max_attempts=1) for n in "ab"
    ]
    firing = make_alert()
    replicas[0].handler([to_inbound(firing)])
    http_receiver.respond(Reply(200, delay=0.3))  # both sweep while the one try is in flight
    for replica in replicas:
        replica.clock.advance(10 * MINUTE)

    with ThreadPoolExecutor(2) as pool:
        due = [f.result() for f in [pool.submit(r.retries.run_once) for r in replicas]]

    assert sum(due) >= 1
    assert [kind for kind, _, _ in sent(http_receiver)] == ["trigger", "trigger"]  # 503, then 200
    (row,) = replicas[1].deliveries()
    assert row.state == "sent"


def test_a_retry_claimed_by_a_replica_that_died_is_taken_over_once_stale(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    http_receiver.respond(Reply(503))
    notifier = notifier_factory(
        {"channels": [hook("pager", http_receiver)]}, notifier_max_attempts=1
    )
    notifier.handler([to_inbound(make_alert())])
    (row,) = notifier.deliveries()
    far = datetime(2100, 1, 1, tzinfo=UTC)
    assert notifier.store.deliveries.claim(
        row.id, "replica-x/retries", timedelta(minutes=5), due_by=far
    )
    http_receiver.respond(Reply(200))
    notifier.clock.advance(10 * MINUTE)
    assert notifier.retries.run_once() == 0  # replica x is retrying it
    assert len(http_receiver.requests) == 1

    with notifier.store.engine.begin() as connection:  # ... and died doing so
        connection.execute(
            update(notifier_deliveries).values(claimed_at=utcnow() - timedelta(hours=1))
        )
    assert notifier.retries.run_once() == 1

    assert len(http_receiver.requests) == 2
    (row,) = notifier.deliveries()
    assert (row.state, row.claimed_by) == ("sent", "replica-1/retries")


def test_waits_double_from_initial_up_to_max_interval_and_end_at_the_deadline() -> None:
    schedule = Schedule(initial=30, max_interval=600, max_age=3600)
    since = T0

    def wait_after(seconds: float, retry_after: float | None = None) -> float:
        now = since + timedelta(seconds=seconds)
        return (schedule.next_attempt(since, now, retry_after) - now).total_seconds()

    assert 24 <= wait_after(0) <= 36
    assert 96 <= wait_after(120) <= 144
    assert 480 <= wait_after(1200) <= 720
    assert wait_after(3500) <= 100  # the last try is at the deadline
    assert wait_after(0, retry_after=300) >= 300  # the server's Retry-After, up to max_interval
    assert wait_after(0, retry_after=7200) <= 720
    assert not schedule.expired(since, since + timedelta(seconds=3599))
    assert schedule.expired(since, since + timedelta(seconds=3600))
    assert not schedule.expired(None, since + timedelta(days=30))


def test_a_channel_takes_its_type_schedule_overridden_field_by_field() -> None:
    channels = parse_channels(
        {
            "channels": [
                {"name": "pd", "type": "pagerduty", "routing_key": "k" * 32},
                {"name": "chat", "type": "slack", "url": "https://h/x", "retry": {"max_age": "2h"}},
                {"name": "siem", "type": "webhook", "url": "https://h/y", "retry": False},
                {"name": "hook", "type": "webhook", "url": "https://h/z", "retry": {"max_age": 0}},
                {
                    "name": "mail",
                    "type": "email",
                    "host": "smtp.example.com",
                    "from": "a@example.com",
                    "to": ["b@example.com"],
                    "retry": {"initial": "30s", "max_interval": "5m", "max_age": "1d"},
                },
            ]
        }
    )
    pd, chat, siem, hook_, mail = channels.channels

    assert schedule_of(pd) == DEFAULT_SCHEDULES["pagerduty"]
    assert schedule_of(chat) == Schedule(initial=30, max_interval=1800, max_age=7200)
    assert schedule_of(siem) is None
    assert schedule_of(hook_) is None
    assert schedule_of(mail) == Schedule(initial=30, max_interval=300, max_age=86400)


def test_the_retention_keeps_an_alert_while_a_channel_still_waits_for_it(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    http_receiver.respond(Reply(503))
    notifier = notifier_factory({"channels": [hook("ops", http_receiver)]}, notifier_max_attempts=1)
    notifier.handler([to_inbound(make_alert())])
    notifier.handler([to_inbound(make_alert(state="resolved"))])
    cutoff = utcnow() + timedelta(days=365)

    assert notifier.store.purge(cutoff)["alerts"] == 0
    http_receiver.respond(Reply(200))
    for _ in range(3):
        notifier.clock.advance(10 * MINUTE)
        notifier.retries.run_once()
    assert [kind for kind, _, _ in sent(http_receiver)] == ["trigger", "trigger", "resolve"]
    assert notifier.store.purge(cutoff)["alerts"] == 1
    assert notifier.deliveries() == []
