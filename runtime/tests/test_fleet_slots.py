"""The fleet-slot schedule: phases, the slot owed at a moment, catch-up after downtime."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from rbr_runtime.schedule import FleetSlots, slot_start

INTERVAL = 300.0
T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)  # the start of a slot
KEYS = [f"rustbucket-{i:08d}" for i in range(1000)]


def test_phases_spread_the_fleet_over_the_given_part_of_the_slot() -> None:
    slots = FleetSlots(INTERVAL, spread=0.9)
    slot = slots.current(T0)
    offsets = [(slots.due_at(key, slot) - T0).total_seconds() for key in KEYS]
    assert all(0 <= offset < 270 for offset in offsets)
    # Every 27-second tenth of the 270 seconds gets some of the fleet.
    assert {int(offset // 27) for offset in offsets} == set(range(10))


def test_each_key_keeps_its_phase_in_every_slot() -> None:
    slots = FleetSlots(INTERVAL)
    slot = slots.current(T0)
    for key in KEYS[:20]:
        offsets = {slots.due_at(key, n) - slot_start(n, INTERVAL) for n in range(slot, slot + 5)}
        assert len(offsets) == 1
    assert len({slots.due_at(key, slot) for key in KEYS[:20]}) == 20


def test_the_slot_owed_at_a_moment() -> None:
    key = KEYS[0]
    plain, catching_up = FleetSlots(INTERVAL), FleetSlots(INTERVAL, catch_up=True)
    slot = plain.current(T0)
    due = plain.due_at(key, slot)
    assert T0 < due < T0 + timedelta(seconds=INTERVAL)
    before = due - timedelta(microseconds=1)
    # Before its phase a key owes nothing in this slot; with catch-up, the previous slot.
    assert plain.owed(key, before) is None
    assert catching_up.owed(key, before) == slot - 1
    # From its due time on (that instant included), the current slot.
    for slots in (plain, catching_up):
        assert slots.owed(key, due) == slot
        assert slots.owed(key, T0 + timedelta(seconds=INTERVAL) - timedelta(microseconds=1)) == slot
        assert slots.owed(key, due + timedelta(seconds=INTERVAL)) == slot + 1
    # Spread 0: every key is due at the very start of the slot.
    assert FleetSlots(INTERVAL, spread=0.0, catch_up=True).owed(key, T0) == slot


def test_a_key_is_due_once_per_slot_at_its_phase() -> None:
    slots = FleetSlots(INTERVAL, spread=0.9)
    keys = KEYS[:50]
    slot = slots.current(T0)
    done: dict[str, int] = {}
    started: list[str] = []
    moment = T0
    while moment < T0 + timedelta(seconds=2 * INTERVAL):
        due = slots.due(keys, moment, done)
        # The earliest due first.
        assert [slots.due_at(*item) for item in due] == sorted(slots.due_at(*item) for item in due)
        for key, owed in due:
            assert moment >= slots.due_at(key, owed)
            done[key] = owed
            started.append(f"{key}@{owed}")
        moment += timedelta(seconds=1)
    expected = [f"{key}@{n}" for key in keys for n in (slot, slot + 1)]
    assert sorted(started) == sorted(expected)  # each key once per slot, none missed


def test_a_key_done_for_the_owed_slot_is_not_due() -> None:
    key = KEYS[1]
    slots = FleetSlots(INTERVAL, catch_up=True)
    slot = slots.current(T0)
    late = T0 + timedelta(seconds=INTERVAL - 1)
    assert slots.due_slot(key, late, None) == slot
    assert slots.due_slot(key, late, slot - 1) == slot
    assert slots.due_slot(key, late, slot) is None
    assert slots.due(KEYS[:3], late, {k: slot for k in KEYS[:3]}) == []


def test_catch_up_after_downtime_does_the_latest_missed_slot_once() -> None:
    key = KEYS[2]
    catching_up, plain = FleetSlots(INTERVAL, catch_up=True), FleetSlots(INTERVAL)
    slot = catching_up.current(T0)
    last_done = slot - 5  # nothing ran for four whole slots
    before_phase = catching_up.due_at(key, slot) - timedelta(seconds=1)
    # Back before the key's phase: the latest missed slot is owed at once (not all four).
    assert catching_up.due_slot(key, before_phase, last_done) == slot - 1
    assert catching_up.due_slot(key, before_phase, slot - 1) is None
    # Then the current slot at its phase, as usual.
    assert catching_up.due_slot(key, catching_up.due_at(key, slot), slot - 1) == slot
    # Without catch-up a missed slot is gone: nothing until the phase in the current slot.
    assert plain.due_slot(key, before_phase, last_done) is None
    assert plain.due_slot(key, plain.due_at(key, slot), last_done) == slot


def test_the_fleet_pass_owes_what_each_key_owes_alone() -> None:
    # `due` skips keys done for the current slot without asking for their phase: the result
    # is still exactly the keys whose own `due_slot` is not None, with or without catch-up.
    rng = random.Random(16)
    for slots in (FleetSlots(INTERVAL, spread=0.9), FleetSlots(INTERVAL, catch_up=True)):
        slot = slots.current(T0)
        for _ in range(20):
            moment = T0 + timedelta(seconds=rng.uniform(0, INTERVAL))
            done = {key: slot + rng.choice([-3, -1, 0, 1]) for key in rng.sample(KEYS, 600)}
            alone = {
                key: owed
                for key in KEYS
                if (owed := slots.due_slot(key, moment, done.get(key))) is not None
            }
            assert dict(slots.due(KEYS, moment, done)) == alone
