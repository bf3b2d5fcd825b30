"""Health transitions and slot scheduling, as pure functions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from rbr_poller.scheduler import due_buckets, status_event_id
from rbr_poller.unresponsive import (
    HealthRow,
    Transition,
    alert_id_for,
    firing_alert,
    polling_gap,
    resolved_alert,
    transition,
)
from rbr_runtime.schedule import due_at, slot_of
from rbr_schemas import AlertState, BucketRegistered, BucketState

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
LIMIT = 900.0
GAP = 610.0


def row(**changes: object) -> HealthRow:
    base = HealthRow(
        name="rustbucket-a1B2c3D4",
        first_seen_at=T0,
        last_success_at=None,
        consecutive_failures=0,
        last_error_class=None,
        last_error=None,
        alert_open=False,
        alert_id=None,
        alert_opened_at=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def polled(base: HealthRow, at: datetime) -> HealthRow:
    """The row after a poll at `at` was recorded, in a run of polls without a gap."""
    return replace(base, last_attempt_at=at, polling_since=base.polling_since or at)


def test_new_bucket_gets_the_full_grace_period_from_first_sight() -> None:
    early = T0 + timedelta(seconds=899)
    assert transition(polled(row(), early), early, LIMIT, GAP) is None
    due = T0 + timedelta(seconds=900)
    assert transition(polled(row(polling_since=T0), due), due, LIMIT, GAP) is Transition.FIRE


def test_silence_is_counted_from_the_last_success() -> None:
    healthy = row(last_success_at=T0 + timedelta(minutes=10), polling_since=T0)
    early, due = T0 + timedelta(minutes=24), T0 + timedelta(minutes=25)
    assert transition(polled(healthy, early), early, LIMIT, GAP) is None
    assert transition(polled(healthy, due), due, LIMIT, GAP) is Transition.FIRE


def test_time_no_poller_polled_is_not_the_buckets_silence() -> None:
    # Polled fine until T0, then every poller was down for two hours.
    before = row(last_success_at=T0, last_attempt_at=T0, polling_since=T0 - timedelta(days=1))
    restart = T0 + timedelta(hours=2)
    assert transition(before, restart, LIMIT, GAP) is None, "no poll since the restart yet"
    # The first poll after the restart fails: a new run of polls begins with it.
    first = replace(before, last_attempt_at=restart, polling_since=restart)
    assert transition(first, restart, LIMIT, GAP) is None
    later = restart + timedelta(seconds=LIMIT - 1)
    assert transition(replace(first, last_attempt_at=later), later, LIMIT, GAP) is None
    due = restart + timedelta(seconds=LIMIT)
    alert_row = replace(first, last_attempt_at=due)
    assert transition(alert_row, due, LIMIT, GAP) is Transition.FIRE
    alert = firing_alert(alert_row, due, LIMIT)
    assert alert.context["silent_since"] == restart.isoformat()
    assert "polling resumed" in alert.detail


def test_a_bucket_that_answered_its_latest_poll_does_not_fire_when_the_next_is_late() -> None:
    # The poller fell behind (a restart, a slow cycle): the bucket answered at T0 and its next
    # poll is overdue, but nothing says the bucket is silent.
    answered = row(last_success_at=T0, last_attempt_at=T0, polling_since=T0 - timedelta(hours=1))
    overdue = T0 + timedelta(seconds=LIMIT + 1)
    assert transition(answered, overdue, LIMIT, LIMIT + GAP) is None
    failed = replace(answered, last_attempt_at=overdue, consecutive_failures=1)
    assert transition(failed, overdue, LIMIT, LIMIT + GAP) is Transition.FIRE


def test_a_bucket_no_longer_polled_does_not_fire() -> None:
    stale = row(last_attempt_at=T0, polling_since=T0)
    assert transition(stale, T0 + timedelta(seconds=GAP), LIMIT, GAP) is None
    assert transition(stale, T0 + timedelta(seconds=GAP + 1), LIMIT, GAP) is None
    assert polling_gap(300.0, 10.0) == 610.0


def test_open_alert_never_fires_again_and_resolves_on_a_later_success() -> None:
    opened = T0 + timedelta(minutes=15)
    open_row = row(alert_open=True, alert_id="a-1", alert_opened_at=opened, consecutive_failures=9)
    later = T0 + timedelta(days=2)
    assert transition(polled(open_row, later), later, LIMIT, GAP) is None
    before = replace(open_row, last_success_at=opened - timedelta(seconds=1))
    assert transition(before, opened + timedelta(minutes=1), LIMIT, GAP) is None
    back = replace(open_row, last_success_at=opened + timedelta(minutes=5))
    assert transition(back, opened + timedelta(minutes=5), LIMIT, GAP) is Transition.RESOLVE


def test_alert_id_is_stable_for_one_silence_and_new_for_the_next() -> None:
    silent = row(
        last_success_at=T0,
        consecutive_failures=4,
        last_error_class="timeout",
        last_error="no complete answer within 10s",
    )
    first = firing_alert(silent, T0 + timedelta(minutes=16), LIMIT)
    again = firing_alert(silent, T0 + timedelta(minutes=17), LIMIT)
    assert first.alert_id == again.alert_id == alert_id_for(silent.name, T0)
    later = firing_alert(
        replace(silent, last_success_at=T0 + timedelta(hours=1)), T0 + timedelta(hours=2), LIMIT
    )
    assert later.alert_id != first.alert_id
    assert first.dedupe_key == f"bucket_unresponsive:{silent.name}"
    assert first.state is AlertState.FIRING
    assert "timeout: no complete answer within 10s" in first.detail
    assert first.context["consecutive_failures"] == 4


def test_resolution_keeps_the_occurrence() -> None:
    open_row = row(
        alert_open=True,
        alert_id="a-1",
        alert_opened_at=T0,
        last_success_at=T0 + timedelta(minutes=3),
    )
    resolved = resolved_alert(open_row, T0 + timedelta(minutes=3))
    assert (resolved.alert_id, resolved.state) == ("a-1", AlertState.RESOLVED)
    assert resolved.occurred_at == T0 + timedelta(minutes=3)


def record(name: str) -> BucketRegistered:
    return BucketRegistered(
        bucket_id=f"id-{name}",
        name=name,
        state=BucketState.ACTIVE,
        ip_address="203.0.113.7",
        token_ciphertext="x",
        registered_at=T0,
        updated_at=T0,
        version=1,
    )


def test_each_bucket_is_due_once_per_slot_at_its_own_phase() -> None:
    interval = 300.0
    records = [record(f"rustbucket-{i:08d}") for i in range(50)]
    done: dict[str, int] = {}
    slot = slot_of(T0, interval)
    polled: list[str] = []
    moment = T0
    while moment < T0 + timedelta(seconds=interval):
        current, due = due_buckets(
            records, moment, interval=interval, jitter=0.9, done=done, busy=set()
        )
        assert current == slot
        for item in due:
            assert moment >= due_at(item.name, slot, interval, 0.9)
            done[item.name] = current
            polled.append(item.name)
        moment += timedelta(seconds=1)
    assert sorted(polled) == sorted(r.name for r in records)  # each once, none missed
    # Phases spread the polls over 90% of the slot.
    latest = max(due_at(r.name, slot, interval, 0.9) for r in records)
    assert latest - T0 <= timedelta(seconds=270)


def test_a_bucket_in_progress_or_done_is_not_due() -> None:
    interval = 300.0
    end_of_slot = T0 + timedelta(seconds=299)
    item = record("rustbucket-busy0000")
    slot = slot_of(T0, interval)
    options = {"interval": interval, "jitter": 0.9}
    assert due_buckets([item], end_of_slot, **options, done={}, busy={item.name})[1] == []
    assert due_buckets([item], end_of_slot, **options, done={item.name: slot}, busy=set())[1] == []
    # A due time passed while the bucket had no owner: due at once for its new owner.
    assert due_buckets([item], end_of_slot, **options, done={item.name: slot - 1}, busy=set())[
        1
    ] == [item]
    assert status_event_id(item.name, slot) == status_event_id(item.name, slot)
    assert status_event_id(item.name, slot) != status_event_id(item.name, slot + 1)
