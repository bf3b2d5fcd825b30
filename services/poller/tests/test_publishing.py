"""Publishing poll results: a broken producer is replaced; waiting results are bounded."""

from __future__ import annotations

from datetime import UTC, datetime

from rbr_poller.pending import STATUSES_DROPPED, PendingResults
from rbr_schemas import BUCKET_STATUS, BucketStatus
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events
from rbr_testing.registry import PollerFactory, RegistrarFactory
from rbr_testing.simulator import FleetFactory
from rbr_testing.waiting import wait_for

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def result(index: int) -> tuple[BucketStatus, str | None]:
    status = BucketStatus(
        bucket_id="id-1", name="rustbucket-a1B2c3D4", polled_at=T0, reachable=False
    )
    return status, f"event-{index}"


def test_waiting_results_are_bounded_dropping_the_oldest() -> None:
    dropped_before = STATUSES_DROPPED._value.get()  # the counter's value
    pending = PendingResults(limit=3)
    for index in range(5):
        pending.add(result(index))
    assert len(pending) == 3
    batch = pending.take()
    assert [event_id for _, event_id in batch] == ["event-2", "event-3", "event-4"]
    pending.add(result(5))
    pending.put_back(batch)  # the flush failed: the batch goes back ahead of the newer one
    assert [event_id for _, event_id in pending.take()] == ["event-3", "event-4", "event-5"]
    assert STATUSES_DROPPED._value.get() - dropped_before == 3


def test_a_poller_whose_producer_broke_for_good_publishes_again(
    broker: Broker,
    registrar_factory: RegistrarFactory,
    poller_factory: PollerFactory,
    fleet_factory: FleetFactory,
) -> None:
    fleet = fleet_factory(count=1)
    registrar = registrar_factory(enrollment_keys="fleet-key")
    assert all(r.ok for r in fleet.register(registrar.url, "fleet-key"))
    poller, _ = poller_factory(bucket_ca_file=str(fleet.ca_file), poll_interval=1.0)

    def published() -> int:
        return len(read_events(broker.bootstrap, BUCKET_STATUS))

    first = wait_for(published, message="a first status")
    # The librdkafka client is closed (as after a fatal error): it never produces again.
    poller.producer._producer.close()  # breaking the client is the point
    wait_for(lambda: published() >= first + 2, message="statuses published after the break")
    assert poller.service.health.readiness()[0], "ready again once publishing works"
