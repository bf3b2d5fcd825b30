"""The lifecycle rules alone: what events do to occurrences and deliveries, without a database."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest

from rbr_notifier.lifecycle import (
    DeliveryContext,
    FoldedItem,
    Occurrence,
    Outcome,
    Repeat,
    Step,
    Turn,
    decide,
    digest_contents,
    digest_resolvable,
    digested_state,
    first_per_channel,
    is_one_shot,
    may_wait,
    on_firing,
    on_resolve,
    postpone,
    resolve_channels,
    turn_of,
    window_of,
)
from rbr_notifier.model import AlertState, AlertView, DeliveryState, Kind
from rbr_notifier.retry_schedule import Schedule
from rbr_schemas import Severity

from .conftest import T0, build_alert

HOUR = 3600.0
DAY = 24 * HOUR


def occurrence(alert_id: str, state: str = "firing", **fields: Any) -> Occurrence:
    return Occurrence(alert_id=alert_id, state=AlertState(state), fired_at=T0, **fields)


def view(alert_id: str = "a1", state: str = "firing", **fields: Any) -> AlertView:
    return AlertView(
        alert_id=alert_id,
        dedupe_key=f"k:{alert_id}",
        type="bucket_unresponsive",
        severity=Severity.HIGH,
        state=AlertState(state),
        title="t",
        detail="d",
        source="/rbr/poller",
        fired_at=T0,
        **fields,
    )


def context(kind: str = "trigger", **fields: Any) -> DeliveryContext:
    values: dict[str, Any] = {
        "id": 1,
        "channel": "pager",
        "kind": Kind(kind),
        "state": DeliveryState.SENDING,
        "attempts": 0,
        "window_start": None,
        "alert": view(),
        "trigger_state": None,
        "trigger_window": None,
        **fields,
    }
    return DeliveryContext(**values)


def step(delivery: DeliveryContext, **flags: bool) -> Step:
    options = {"configured": True, "channel_down": False, "closes_digests": False}
    return decide(delivery, **{**options, "throttled": False, **flags}).step


# -- firing --------------------------------------------------------------------------------------


def test_a_first_firing_opens_a_new_occurrence() -> None:
    firing = on_firing("a1", "e1", T0, same_id=None, open_occurrences=[], reopen_after=DAY)

    assert firing.outcome is Outcome.NEW
    assert firing.owned == ("a1",)
    assert firing.repeat is None
    assert firing.superseded == ()


def test_a_firing_whose_occurrence_already_resolved_is_a_replay() -> None:
    resolved = occurrence("a1", "resolved")

    firing = on_firing("a1", "e9", T0, same_id=resolved, open_occurrences=[], reopen_after=DAY)

    assert firing.outcome is Outcome.REPLAY
    assert firing.owned == ()
    assert firing.repeat is None


@pytest.mark.parametrize("state", ["firing", "acknowledged"])
def test_a_firing_of_an_open_occurrence_is_a_repeat_that_owns_its_deliveries(state: str) -> None:
    open_one = occurrence("a1", state, last_event_id="e1")
    later = T0 + timedelta(minutes=5)

    firing = on_firing("a1", "e2", later, same_id=open_one, open_occurrences=[], reopen_after=DAY)

    assert firing.outcome is Outcome.REPEAT
    assert firing.owned == ("a1",)
    assert firing.repeat == Repeat("a1", later, "e2")


def test_the_same_event_handled_twice_counts_no_second_repeat() -> None:
    open_one = occurrence("a1", last_event_id="e1")

    firing = on_firing("a1", "e1", T0, same_id=open_one, open_occurrences=[], reopen_after=DAY)

    assert firing.outcome is Outcome.REPEAT
    assert firing.owned == ("a1",)
    assert firing.repeat is None


def test_a_late_older_firing_does_not_move_last_seen_back() -> None:
    seen = T0 + timedelta(hours=2)
    open_one = occurrence("a1", last_seen_at=seen, last_event_id="e5")

    firing = on_firing("a1", "e3", T0, same_id=open_one, open_occurrences=[], reopen_after=DAY)

    assert firing.repeat == Repeat("a1", seen, "e3")


def test_a_new_alert_id_while_the_key_fires_repeats_the_most_recent_open_occurrence() -> None:
    older = occurrence("a1", last_seen_at=T0 + timedelta(minutes=1))
    newer = occurrence("a2", "acknowledged", last_seen_at=T0 + timedelta(minutes=9))
    now = T0 + timedelta(minutes=10)

    firing = on_firing(
        "a3", "e3", now, same_id=None, open_occurrences=[older, newer], reopen_after=DAY
    )

    assert firing.outcome is Outcome.REPEAT
    assert firing.owned == ("a2",)
    assert firing.repeat == Repeat("a2", now, "e3")
    assert firing.superseded == ()


def test_a_new_alert_id_after_the_key_went_quiet_supersedes_the_stale_occurrences() -> None:
    stale = occurrence("a1", last_seen_at=T0)
    staler = occurrence("a2")  # never repeated: last seen when it fired
    much_later = T0 + timedelta(seconds=DAY + 1)

    firing = on_firing(
        "a3", "e3", much_later, same_id=None, open_occurrences=[staler, stale], reopen_after=DAY
    )

    assert firing.outcome is Outcome.NEW
    assert firing.owned == ("a3",)
    assert {o.alert_id for o in firing.superseded} == {"a1", "a2"}
    assert [o.last_seen for o in firing.superseded] == [T0, T0]  # closed when they last fired


def test_with_reopen_after_zero_an_open_occurrence_never_goes_stale() -> None:
    ancient = occurrence("a1")
    years_later = T0 + timedelta(days=900)

    firing = on_firing(
        "a2", "e2", years_later, same_id=None, open_occurrences=[ancient], reopen_after=0
    )

    assert firing.outcome is Outcome.REPEAT
    assert firing.owned == ("a1",)


# -- resolve -------------------------------------------------------------------------------------


def test_a_resolve_of_an_alert_never_seen_notifies_nobody() -> None:
    resolution = on_resolve([])

    assert resolution.outcome is Outcome.RESOLVE_UNKNOWN
    assert resolution.closes == ()
    assert resolution.owned == ()


def test_a_resolve_closes_the_open_occurrences_and_owns_the_resolves_of_all() -> None:
    # Its own occurrence resolved already (a redelivery), another open one of the same key.
    targets = [occurrence("a1", "resolved"), occurrence("a2", "acknowledged")]

    resolution = on_resolve(targets)

    assert resolution.outcome is Outcome.RESOLVE
    assert resolution.closes == ("a2",)
    assert resolution.owned == ("a1", "a2")


def test_resolves_go_to_the_channels_the_firing_reached_or_still_will() -> None:
    triggers = [
        ("sent", DeliveryState.SENT),
        ("in-digest", DeliveryState.THROTTLED),
        ("digested", DeliveryState.DIGESTED),
        ("waiting", DeliveryState.WAITING),
        ("pending", DeliveryState.PENDING),
        ("sending", DeliveryState.SENDING),
        ("skipped", DeliveryState.SKIPPED),
        ("failed", DeliveryState.FAILED),
        ("rejected", DeliveryState.REJECTED),
    ]

    assert resolve_channels(triggers) == [
        "sent",
        "in-digest",
        "digested",
        "waiting",
        "pending",
        "sending",
    ]


def test_only_the_firing_of_a_daily_summary_is_one_shot() -> None:
    summary = build_alert("daily_summary:2026-11-21", type="daily_summary", severity="info")

    assert is_one_shot(summary)
    assert not is_one_shot(summary.model_copy(update={"state": "resolved"}))
    assert not is_one_shot(build_alert())


# -- deliveries ----------------------------------------------------------------------------------


def test_who_handles_a_delivery() -> None:
    waiting = context(state=DeliveryState.WAITING, next_attempt_at=T0)

    assert turn_of(context(state=DeliveryState.SENT), retry_sweep=False) is Turn.ENDED
    assert turn_of(context(state=DeliveryState.SENT), retry_sweep=True) is Turn.ENDED
    assert turn_of(waiting, retry_sweep=False) is Turn.SWEEPER
    assert turn_of(waiting, retry_sweep=True) is Turn.THIS_RUN
    assert turn_of(context(state=DeliveryState.PENDING), retry_sweep=False) is Turn.THIS_RUN


def test_a_channel_no_longer_configured_is_skipped() -> None:
    decision = decide(
        context(), configured=False, channel_down=False, closes_digests=False, throttled=False
    )

    assert (decision.step, decision.reason) == (Step.SKIP, "channel no longer configured")


def test_an_acknowledged_firing_is_not_sent() -> None:
    acknowledged = context(alert=view(state="acknowledged"))
    resolved_after_ack = context(alert=view(state="resolved", acknowledged_at=T0))

    for delivery in (acknowledged, resolved_after_ack):
        decision = decide(
            delivery, configured=True, channel_down=False, closes_digests=False, throttled=False
        )
        assert (decision.step, decision.reason) == (
            Step.SKIP,
            "alert acknowledged before it was sent",
        )


def test_a_firing_resolved_before_its_first_try_is_not_sent_but_one_owed_still_is() -> None:
    never_tried = context(alert=view(state="resolved"))
    owed = replace(never_tried, next_attempt_at=T0, waiting_since=T0)

    assert step(never_tried) is Step.SKIP
    assert step(owed) is Step.SEND


def test_a_delivery_behind_an_unfinished_earlier_one_waits_for_it() -> None:
    assert step(context(behind=True)) is Step.WAIT_BEHIND
    resolve = context("resolve", trigger_state=DeliveryState.WAITING, behind=True)
    assert step(resolve) is Step.WAIT_BEHIND  # a resolve never overtakes its firing
    # ... unless it is not to be sent at all any more.
    assert step(context(behind=True, alert=view(state="acknowledged"))) is Step.SKIP


def test_a_delivery_to_a_channel_that_just_failed_is_postponed() -> None:
    assert step(context(), channel_down=True) is Step.POSTPONE
    assert step(context("resolve", trigger_state=DeliveryState.SENT), channel_down=True) is (
        Step.POSTPONE
    )


@pytest.mark.parametrize(
    ("trigger", "reason"),
    [
        (DeliveryState.FAILED, "the firing could not be delivered to the channel, so no resolve"),
        (DeliveryState.REJECTED, "the firing could not be delivered to the channel, so no resolve"),
        (DeliveryState.SKIPPED, "channel was not notified of the firing"),
        (None, "channel was not notified of the firing"),
    ],
)
def test_no_resolve_to_a_channel_that_did_not_get_the_firing(
    trigger: DeliveryState | None, reason: str
) -> None:
    decision = decide(
        context("resolve", trigger_state=trigger),
        configured=True,
        channel_down=False,
        closes_digests=False,
        throttled=True,
    )

    assert decision.step is Step.SKIP
    assert decision.reason.startswith(reason)


def test_a_resolve_follows_its_firing_and_is_never_throttled() -> None:
    resolve = context("resolve", trigger_state=DeliveryState.SENT)

    assert step(resolve, throttled=True) is Step.SEND
    assert step(replace(resolve, alert=view(state="acknowledged")), throttled=True) is Step.SEND


def test_a_resolve_whose_firing_waits_in_a_digest_joins_it() -> None:
    resolve = context("resolve", trigger_state=DeliveryState.THROTTLED, trigger_window=T0)

    assert step(resolve, throttled=True) is Step.JOIN_DIGEST
    assert step(resolve, throttled=True, closes_digests=True) is Step.JOIN_DIGEST


def test_a_resolve_whose_firing_went_out_in_a_digest_closes_the_digest_where_it_opened_one() -> (
    None
):
    resolve = context("resolve", trigger_state=DeliveryState.DIGESTED, trigger_window=T0)

    assert step(resolve, closes_digests=True) is Step.CLOSE_DIGEST  # PagerDuty, Opsgenie
    assert step(resolve, closes_digests=False) is Step.SEND  # email, Slack, webhook


def test_the_throttle_counts_a_firing_once() -> None:
    assert step(context(), throttled=False) is Step.SEND
    assert step(context(), throttled=True) is Step.COUNT
    assert step(context(window_start=T0), throttled=True) is Step.SEND  # counted before


def test_throttle_windows_are_aligned_to_the_epoch() -> None:
    start, end = window_of(T0 + timedelta(minutes=3, seconds=20), 300)
    assert (start, end) == (T0, T0 + timedelta(minutes=5))
    assert window_of(T0 + timedelta(minutes=5), 300) == (
        T0 + timedelta(minutes=5),
        T0 + timedelta(minutes=10),
    )


# -- the retry schedule --------------------------------------------------------------------------

SCHEDULE = Schedule(initial=30, max_interval=15 * 60, max_age=6 * HOUR)


def test_a_postponed_delivery_waits_for_its_channels_retry_within_its_own_schedule() -> None:
    now = T0 + timedelta(hours=1)
    retry = now + timedelta(minutes=10)

    fresh = postpone(SCHEDULE, None, now, retry)
    assert (fresh.since, fresh.retry_at, fresh.expired) == (now, retry, False)

    near_its_end = postpone(SCHEDULE, now - timedelta(hours=6, minutes=-5), now, retry)
    assert near_its_end.retry_at == now + timedelta(minutes=5)  # its deadline comes first


def test_a_postponed_delivery_is_given_up_on_without_a_schedule_or_once_it_ran_out() -> None:
    now = T0 + timedelta(hours=7)

    no_schedule = postpone(None, None, now, now)
    assert (no_schedule.retry_at, no_schedule.expired) == (None, False)
    ran_out = postpone(SCHEDULE, T0, now, now + timedelta(minutes=1))
    assert (ran_out.since, ran_out.retry_at, ran_out.expired) == (T0, None, True)


def test_a_failed_delivery_may_wait_while_its_schedule_lasts() -> None:
    assert may_wait(SCHEDULE, None, T0)
    assert may_wait(SCHEDULE, T0, T0 + timedelta(hours=5))
    assert not may_wait(SCHEDULE, T0, T0 + timedelta(hours=6))
    assert not may_wait(None, None, T0)


@dataclass(frozen=True)
class Due:
    id: int
    channel: str


def test_due_retries_try_one_per_channel_first() -> None:
    due = [Due(1, "a"), Due(2, "a"), Due(3, "b"), Due(4, "a"), Due(5, "b")]

    firsts, others = first_per_channel(due)

    assert [d.id for d in firsts] == [1, 3]
    assert [d.id for d in others] == [2, 4, 5]


# -- digests -------------------------------------------------------------------------------------


def folded(delivery_id: int, kind: str, alert_id: str, state: str = "firing") -> FoldedItem:
    return FoldedItem(delivery_id, Kind(kind), view(alert_id, state))


def test_a_digest_leaves_out_firings_acknowledged_meanwhile() -> None:
    items = [folded(1, "trigger", "a1"), folded(2, "trigger", "a2", "acknowledged")]

    contents = digest_contents(items, closes_digests=False)

    assert [i.delivery_id for i in contents.acknowledged] == [2]
    assert [i.delivery_id for i in contents.carried] == [1]


def test_a_resolve_whose_firing_went_out_in_an_earlier_digest_is_closed_with_that_digest() -> None:
    items = [
        folded(1, "trigger", "a1"),
        folded(2, "resolve", "a1", "resolved"),  # its firing is in this digest
        folded(3, "resolve", "a0", "resolved"),  # its firing went out in an earlier one
    ]

    opens_incidents = digest_contents(items, closes_digests=True)
    assert [i.delivery_id for i in opens_incidents.late] == [3]
    assert [i.delivery_id for i in opens_incidents.carried] == [1, 2]

    chat = digest_contents(items, closes_digests=False)
    assert chat.late == ()
    assert [i.delivery_id for i in chat.carried] == [1, 2, 3]


def test_a_digests_own_resolve_is_due_once_every_alert_it_carried_resolved() -> None:
    resolved, firing = AlertState.RESOLVED, AlertState.FIRING

    assert digest_resolvable([resolved, resolved])
    assert not digest_resolvable([resolved, firing])
    assert not digest_resolvable([resolved, AlertState.ACKNOWLEDGED])
    assert not digest_resolvable([])


def test_the_deliveries_a_digest_carried_end_as_the_digest_did() -> None:
    assert digested_state(DeliveryState.SENT) is DeliveryState.DIGESTED
    assert digested_state(DeliveryState.FAILED) is DeliveryState.FAILED
    assert digested_state(DeliveryState.REJECTED) is DeliveryState.REJECTED
