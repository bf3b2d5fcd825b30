"""Digests on PagerDuty and Opsgenie are resolved once every alert folded into them resolved.

Local HTTP receivers play PagerDuty (Events API v2) and Opsgenie (Alert API); the handler and
the digest sweeper run on the real MariaDB, as two replicas where it matters.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from sqlalchemy import delete

from rbr_notifier.store.alerts import AlertEvent
from rbr_runtime.db.tables import notifier_windows
from rbr_runtime.errors import TransientError
from rbr_runtime.kafka.consumer import Inbound
from rbr_schemas import Alert, utcnow
from rbr_testing.http_receiver import HttpReceiver, ReceivedRequest, Reply
from rbr_testing.waiting import wait_for

Factory = Callable[..., Any]
ROUTING_KEY = "R0123456789ABCDEF0123456789ABCDE"
# Windows are aligned to the epoch; the tests' clock starts at 09:00:00 UTC.
DIGEST_KEY = "rbr-digest:2026-11-21T09:00:00+00:00"
THROTTLE = {"max": 1, "window": 60}


def pagerduty(receiver: HttpReceiver, **extra: Any) -> dict[str, Any]:
    return {
        "name": "pd",
        "type": "pagerduty",
        "routing_key": ROUTING_KEY,
        "base_url": receiver.url,
        "throttle": THROTTLE,
        **extra,
    }


def opsgenie(receiver: HttpReceiver) -> dict[str, Any]:
    return {
        "name": "og",
        "type": "opsgenie",
        "api_key": "0123456789abcdef",
        "base_url": receiver.url,
        "throttle": THROTTLE,
    }


def flood(
    notifier: Any, make_alert: Callable[..., Alert], to_inbound: Callable[..., Inbound[Any]]
) -> list[Alert]:
    """Fires four alerts on a channel allowing one per window: three are folded."""
    alerts = [make_alert(f"analysis:b{i}:finding", bucket=f"b{i}") for i in range(4)]
    notifier.handler([to_inbound(alerts[0])])  # alone, so it is the one that takes the slot
    notifier.handler([to_inbound(alert) for alert in alerts[1:]])
    return alerts


def resolved(alert: Alert, make_alert: Callable[..., Alert]) -> Alert:
    return make_alert(alert.dedupe_key, state="resolved", bucket=alert.bucket)


def events(receiver: HttpReceiver) -> list[tuple[str, str]]:
    """Returns the PagerDuty events received, as (event_action, dedup_key)."""
    return [(r.json()["event_action"], r.json()["dedup_key"]) for r in receiver.requests]


def assert_pagerduty_digest(request: ReceivedRequest, folded: list[Alert]) -> None:
    """Checks a digest trigger has the documented shape (README: PagerDuty)."""
    event = request.json()
    assert request.path == "/v2/enqueue"
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == f"{DIGEST_KEY}:pd"
    payload = event["payload"]
    assert payload["class"] == "digest"
    assert payload["severity"] == "error"
    assert payload["summary"].startswith("3 alert notifications held back by the throttle")
    assert payload["custom_details"]["total"] == 3
    listed = payload["custom_details"]["alerts"]
    assert [any(a.dedupe_key in line for line in listed) for a in folded] == [True] * 3


@pytest.mark.parametrize("closer", ["handler", "replica"])
def test_a_pagerduty_digest_is_resolved_once_when_its_last_alert_resolves(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
    closer: str,
) -> None:
    document = {"channels": [pagerduty(http_receiver)]}
    notifier = notifier_factory(document)
    other = notifier_factory(document, owner="replica-2")
    first, *folded = flood(notifier, make_alert, to_inbound)
    notifier.clock.advance(60)
    assert notifier.sweeper.run_once() == 1
    assert events(http_receiver) == [
        ("trigger", first.dedupe_key),
        ("trigger", f"{DIGEST_KEY}:pd"),
    ]
    assert_pagerduty_digest(http_receiver.requests[1], folded)

    # Partial resolution sends nothing: no resolve for keys PagerDuty never saw, and the
    # digest's incident stays open while one of its alerts still fires.
    notifier.handler([to_inbound(resolved(alert, make_alert)) for alert in folded[:2]])
    assert other.sweeper.run_once() == 0
    assert len(http_receiver.requests) == 2

    last = to_inbound(resolved(folded[2], make_alert))
    (other if closer == "replica" else notifier).handler([last])
    assert events(http_receiver)[2:] == [("resolve", f"{DIGEST_KEY}:pd")]
    assert http_receiver.requests[2].json() == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": f"{DIGEST_KEY}:pd",
    }

    # Redelivered (at least once), on either replica, and swept again: nothing more.
    notifier.handler([last])
    other.handler([to_inbound(resolved(folded[2], make_alert))])
    assert notifier.sweeper.run_once() == 0
    assert other.sweeper.run_once() == 0
    assert len(http_receiver.requests) == 3

    (attempt,) = [a for a in notifier.attempts() if a.kind == "resolve"]
    assert (attempt.alert_id, attempt.dedupe_key, attempt.channel, attempt.status) == (
        None,
        f"{DIGEST_KEY}:pd",
        "pd",
        "sent",
    )
    closed = [r for r in notifier.deliveries() if r.kind == "resolve" and r.alert_id != DIGEST_KEY]
    assert [r.state for r in closed] == ["digested"] * 3
    (digest_resolve,) = [r for r in notifier.deliveries() if r.alert_id == DIGEST_KEY]
    assert (digest_resolve.state, digest_resolve.attempts) == ("sent", 1)


def test_an_opsgenie_digest_alert_is_closed_by_its_alias(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    notifier = notifier_factory({"channels": [opsgenie(http_receiver)]})
    _, *folded = flood(notifier, make_alert, to_inbound)
    notifier.clock.advance(60)
    assert notifier.sweeper.run_once() == 1
    digest = http_receiver.requests[1]
    assert (digest.path, digest.json()["alias"]) == ("/v2/alerts", f"{DIGEST_KEY}:og")
    assert "digest" in digest.json()["tags"]

    notifier.handler([to_inbound(resolved(folded[0], make_alert))])
    notifier.handler([to_inbound(resolved(folded[1], make_alert))])
    assert len(http_receiver.requests) == 2  # partial: nothing
    notifier.handler([to_inbound(resolved(folded[2], make_alert))])

    (close,) = http_receiver.requests[2:]
    assert unquote(close.path) == f"/v2/alerts/{DIGEST_KEY}:og/close"
    assert close.query == {"identifierType": ["alias"]}
    assert close.headers["authorization"] == "GenieKey 0123456789abcdef"
    assert close.json() == {
        "source": "rustbucket-registry",
        "note": "All 3 alerts of this digest resolved (Rustbucket Registry).",
    }
    assert notifier.sweeper.run_once() == 0
    assert len(http_receiver.requests) == 3


def test_a_digest_whose_alerts_all_resolved_before_it_went_out_is_resolved_with_it(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    document = {"channels": [pagerduty(http_receiver)]}
    notifier = notifier_factory(document)
    _, *folded = flood(notifier, make_alert, to_inbound)
    # Their resolves join the digest (nothing was opened for them yet).
    notifier.handler([to_inbound(resolved(alert, make_alert)) for alert in folded])
    assert len(http_receiver.requests) == 1

    notifier.clock.advance(60)
    assert notifier.sweeper.run_once() == 1
    assert events(http_receiver)[1:] == [
        ("trigger", f"{DIGEST_KEY}:pd"),
        ("resolve", f"{DIGEST_KEY}:pd"),
    ]
    restarted = notifier_factory(document, owner="replica-2")
    restarted.clock.advance(60)
    assert restarted.sweeper.run_once() == 0
    assert len(http_receiver.requests) == 3


def test_a_digest_resolve_another_replica_is_sending_is_not_sent_twice(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    document = {"channels": [pagerduty(http_receiver)]}
    paused, resume = threading.Event(), threading.Event()

    def hold(_: float) -> bool:
        paused.set()
        resume.wait(20)
        return False

    first = notifier_factory(document, owner="replica-a", wait=hold)
    second = notifier_factory(document, owner="replica-b")
    _, *folded = flood(first, make_alert, to_inbound)
    second.clock.advance(60)
    assert second.sweeper.run_once() == 1
    first.handler([to_inbound(resolved(alert, make_alert)) for alert in folded[:2]])
    last = to_inbound(resolved(folded[2], make_alert))
    http_receiver.enqueue(Reply(503))

    with ThreadPoolExecutor(1) as pool:
        # Replica A is between two tries of the digest's resolve when B gets the partition.
        running = pool.submit(first.handler, [last])
        wait_for(paused.is_set, message="replica A's retry pause")
        with pytest.raises(TransientError, match="being sent by another notifier replica"):
            second.handler([last])
        assert second.sweeper.run_once() == 0  # nor does B's sweeper take it
        resume.set()
        running.result(timeout=20)

    second.handler([last])  # B's retry of the batch finds it sent and commits
    assert events(http_receiver)[2:] == [("resolve", f"{DIGEST_KEY}:pd")] * 2  # 503, then ok
    (row,) = [r for r in second.deliveries() if r.alert_id == DIGEST_KEY]
    assert (row.state, row.claimed_by, row.attempts) == ("sent", "replica-a", 2)


def test_a_digest_resolve_that_cannot_be_sent_dead_letters_the_alert_until_a_replay(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    notifier = notifier_factory({"channels": [pagerduty(http_receiver)]}, notifier_max_attempts=2)
    _, *folded = flood(notifier, make_alert, to_inbound)
    notifier.clock.advance(60)
    assert notifier.sweeper.run_once() == 1
    notifier.handler([to_inbound(resolved(alert, make_alert)) for alert in folded[:2]])
    http_receiver.respond(Reply(503, b"maintenance"))
    last = resolved(folded[2], make_alert)

    (rejection,) = notifier.rejected([to_inbound(last)])
    reason = rejection.reason
    assert f"channel pd (pagerduty): resolve of digest {DIGEST_KEY}:pd gave up" in reason
    assert "HTTP 503" in reason
    assert ROUTING_KEY not in reason
    assert notifier.sweeper.run_once() == 0  # failed: left to the DLQ replay
    assert len(http_receiver.requests) == 4  # flood trigger, digest, two tries

    http_receiver.respond(Reply(202))
    notifier.handler([to_inbound(last)])  # replayed from the DLQ (a new offset)
    assert events(http_receiver)[4:] == [("resolve", f"{DIGEST_KEY}:pd")]
    statuses = [(a.attempt, a.status) for a in notifier.attempts() if a.kind == "resolve"]
    assert statuses == [(1, "retrying"), (2, "failed"), (3, "sent")]


def test_a_resolve_folded_after_its_digest_went_out_does_not_page_again(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    notifier = notifier_factory({"channels": [pagerduty(http_receiver)]})
    _, *folded = flood(notifier, make_alert, to_inbound)
    notifier.clock.advance(60)
    assert notifier.sweeper.run_once() == 1
    for alert in folded[1:]:
        notifier.handler([to_inbound(resolved(alert, make_alert))])
    # The last resolve raced the digest: the dispatcher saw its firing still waiting and folded
    # it into the window just after the digest was sent.
    message = to_inbound(resolved(folded[0], make_alert))
    assert message.event is not None
    ((_, (planned,)),) = notifier.store.alerts.record_events(
        [AlertEvent(message.event.id, message.data)], lambda _: ["pd"], reopen_after=0
    )
    (trigger,) = [
        r for r in notifier.deliveries() if r.alert_id == folded[0].alert_id and r.kind == "trigger"
    ]
    notifier.store.windows.fold(planned.id, "pd", trigger.window_start)

    assert notifier.sweeper.run_once() == 0
    # No second digest trigger (it would re-open the incident): the digest's resolve instead.
    assert events(http_receiver)[1:] == [
        ("trigger", f"{DIGEST_KEY}:pd"),
        ("resolve", f"{DIGEST_KEY}:pd"),
    ]


def test_a_digest_outliving_its_purged_window_is_still_resolved_then_purged(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    notifier = notifier_factory({"channels": [pagerduty(http_receiver)]})
    first, *folded = flood(notifier, make_alert, to_inbound)
    notifier.clock.advance(60)
    assert notifier.sweeper.run_once() == 1
    # The retention removes ended windows while their alerts still fire.
    with notifier.store.engine.begin() as connection:
        connection.execute(delete(notifier_windows))

    notifier.handler([to_inbound(resolved(alert, make_alert)) for alert in folded])
    assert events(http_receiver)[2:] == [("resolve", f"{DIGEST_KEY}:pd")]

    notifier.store.purge(utcnow() + timedelta(days=1))
    # Resolved history and the digest's resolve go; the first alert still fires, so it stays.
    assert [(r.alert_id, r.kind) for r in notifier.deliveries()] == [(first.alert_id, "trigger")]


def test_the_last_alerts_resolving_in_one_batch_resolve_the_digest_once(
    notifier_factory: Factory,
    http_receiver: HttpReceiver,
    make_alert: Callable[..., Alert],
    to_inbound: Callable[..., Inbound[Any]],
) -> None:
    # One replica's delivery threads share a claim owner: they must not both send it.
    notifier = notifier_factory({"channels": [pagerduty(http_receiver)]}, workers=4)
    _, *folded = flood(notifier, make_alert, to_inbound)
    notifier.clock.advance(60)
    assert notifier.sweeper.run_once() == 1

    notifier.handler([to_inbound(resolved(alert, make_alert)) for alert in folded])
    assert notifier.sweeper.run_once() == 0

    assert events(http_receiver)[2:] == [("resolve", f"{DIGEST_KEY}:pd")]
