"""Health transitions and slot scheduling, as pure functions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from rbr_poller.health import (
    HealthRow,
    Transition,
    alert_id_for,
    firing_alert,
    resolved_alert,
    transition,
)
from rbr_poller.scheduler import due_buckets, status_event_id
from rbr_runtime.schedule import due_at, slot_of
from rbr_schemas import AlertState, BucketRegistered, BucketState

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
LIMIT = 900.0


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


def test_new_bucket_gets_the_full_grace_period_from_first_sight() -> None:
    assert transition(row(), T0 + timedelta(seconds=899), LIMIT) is None
    assert transition(row(), T0 + timedelta(seconds=900), LIMIT) is Transition.FIRE


def test_silence_is_counted_from_the_last_success() -> None:
    healthy = row(last_success_at=T0 + timedelta(minutes=10))
    assert transition(healthy, T0 + timedelta(minutes=24), LIMIT) is None
    assert transition(healthy, T0 + timedelta(minutes=25), LIMIT) is Transition.FIRE


def test_a_changed_registration_restarts_the_count() -> None:
    old = row(last_success_at=T0)
    reapproved = replace(old, registration_changed_at=T0 + timedelta(days=1))
    assert transition(old, T0 + timedelta(days=1, minutes=1), LIMIT) is Transition.FIRE
    assert transition(reapproved, T0 + timedelta(days=1, minutes=1), LIMIT) is None
    assert transition(reapproved, T0 + timedelta(days=1, minutes=15), LIMIT) is Transition.FIRE


def test_open_alert_never_fires_again_and_resolves_on_a_later_success() -> None:
    opened = T0 + timedelta(minutes=15)
    open_row = row(alert_open=True, alert_id="a-1", alert_opened_at=opened, consecutive_failures=9)
    assert transition(open_row, T0 + timedelta(days=2), LIMIT) is None
    before = replace(open_row, last_success_at=opened - timedelta(seconds=1))
    assert transition(before, opened + timedelta(minutes=1), LIMIT) is None
    back = replace(open_row, last_success_at=opened + timedelta(minutes=5))
    assert transition(back, opened + timedelta(minutes=5), LIMIT) is Transition.RESOLVE


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
