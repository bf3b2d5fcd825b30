"""Two poller replicas split 20 buckets: each polled once per slot, across a rebalance.

Counted at the simulated buckets themselves: the requests each bucket received, by slot. A
request belongs to the slot whose due moment for the bucket it followed (its slot's start
plus the bucket's phase), so a poll that a busy machine delays past the end of its slot is
still counted in its own slot, not as a second poll in the next.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from rbr_runtime.schedule import phase, slot_of, slot_start
from rbr_testing.registry import PollerFactory, RegistrarFactory
from rbr_testing.simulator import FleetFactory
from rbr_testing.waiting import wait_for

INTERVAL = 6.0
JITTER = 0.5
STOP_INTO_SLOT = timedelta(seconds=1.0)


def wait_until(moment: datetime) -> None:
    """Waits for a point in time the test is about (a slot boundary): the clock is the point."""
    remaining = (moment - datetime.now(UTC)).total_seconds()
    if remaining > 0:
        time.sleep(remaining)


def test_two_replicas_poll_every_bucket_once_per_slot_across_a_rebalance(
    registrar_factory: RegistrarFactory,
    poller_factory: PollerFactory,
    fleet_factory: FleetFactory,
) -> None:
    fleet = fleet_factory(count=20)
    registrar = registrar_factory(enrollment_keys="fleet-key")
    assert all(r.ok for r in fleet.register(registrar.url, "fleet-key"))
    options = {
        "bucket_ca_file": str(fleet.ca_file),
        "poll_interval": INTERVAL,
        "poll_jitter": JITTER,
    }
    first, first_handle = poller_factory(**options)
    second, _ = poller_factory(**options)
    wait_for(
        lambda: (
            first.directory.assigned_partitions
            and second.directory.assigned_partitions
            and first.directory.caught_up
            and second.directory.caught_up
        ),
        message="both replicas own partitions",
    )
    owned = {r.name for r in first.directory.buckets()} | {
        r.name for r in second.directory.buckets()
    }
    assert owned == set(fleet.names)
    assert not {r.name for r in first.directory.buckets()} & {
        r.name for r in second.directory.buckets()
    }

    start = slot_of(datetime.now(UTC), INTERVAL) + 1
    # A slot with both replicas; then one replica stops a second into the next slot (some
    # of its buckets polled in that slot, most not yet due); one more slot alone.
    wait_until(slot_start(start + 1, INTERVAL) + STOP_INTO_SLOT)
    assert first.loop.polls_done > 0
    assert second.loop.polls_done > 0
    first_handle.stop()
    end = start + 2
    wait_until(slot_start(end + 1, INTERVAL))
    wait_for(lambda: not second.loop.in_flight, message="polls in flight done")

    per_slot: dict[str, Counter[int]] = {}
    for name in fleet.names:
        arrivals = fleet.requests(name, "/update_bucket")
        due_offset = timedelta(seconds=phase(name, INTERVAL, JITTER))
        per_slot[name] = Counter(slot_of(r.at - due_offset, INTERVAL) for r in arrivals)
    twice = {
        name: {slot: n for slot, n in counts.items() if n > 1}
        for name, counts in per_slot.items()
        if any(n > 1 for n in counts.values())
    }
    missed = {
        name: [slot for slot in range(start, end + 1) if counts[slot] == 0]
        for name, counts in per_slot.items()
        if any(counts[slot] == 0 for slot in range(start, end + 1))
    }
    assert twice == {}, f"polled twice in a slot: {twice}"
    assert missed == {}, f"missed slots: {missed}"
