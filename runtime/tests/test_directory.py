"""Reading bucket.registered: partition ownership per replica, and the whole-topic reader."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from rbr_runtime.kafka import BucketDirectory, EventProducer
from rbr_runtime.kafka.directory import TopicMissing, read_registrations, read_registry
from rbr_runtime.settings import CommonSettings
from rbr_schemas import BUCKET_REGISTERED, BucketRegistered, BucketState
from rbr_testing.broker import Broker
from rbr_testing.waiting import wait_for

pytestmark = pytest.mark.broker
NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def registration(name: str, state: BucketState = BucketState.ACTIVE) -> BucketRegistered:
    return BucketRegistered(
        bucket_id=f"id-{name}",
        name=name,
        state=state,
        ip_address="203.0.113.5",
        token_ciphertext="ciphertext",
        registered_at=NOW,
        updated_at=NOW,
        version=1,
    )


@pytest.fixture
def settings(broker: Broker) -> CommonSettings:
    return CommonSettings(kafka_bootstrap=broker.bootstrap, kafka_session_timeout_ms=2000)


@pytest.fixture
def producer(settings: CommonSettings) -> Iterator[EventProducer]:
    producer = EventProducer(settings, source="/rbr/test")
    yield producer
    producer.flush()


class Replica:
    def __init__(self, settings: CommonSettings, group: str) -> None:
        self.directory = BucketDirectory(settings, group)
        self.thread = threading.Thread(target=self.directory.run, daemon=True)
        self.thread.start()

    def names(self) -> set[str]:
        return {b.name for b in self.directory.buckets()}

    def stop(self) -> None:
        self.directory.stop()
        self.thread.join(15)


def test_two_replicas_split_the_fleet_and_a_rebalance_loses_nothing(
    settings: CommonSettings, producer: EventProducer
) -> None:
    names = {f"rustbucket-{i:04d}" for i in range(40)}
    for name in names:
        producer.send(BUCKET_REGISTERED, name, registration(name))

    first, second = Replica(settings, "poller"), Replica(settings, "poller")
    try:
        wait_for(
            lambda: (
                first.directory.caught_up
                and second.directory.caught_up
                and len(first.names()) + len(second.names()) == 40
            ),
            message="both replicas caught up",
        )
        assert first.names().isdisjoint(second.names())
        assert first.names() | second.names() == names
        assert first.names(), "the first replica owns nothing"
        assert second.names(), "the second replica owns nothing"

        second.stop()
        wait_for(lambda: first.names() == names, message="survivor owns every bucket")
    finally:
        first.stop()
        second.stop()


def test_tombstone_and_state_changes_are_applied(
    settings: CommonSettings, producer: EventProducer
) -> None:
    replica = Replica(settings, "log-extractor")
    try:
        wait_for(lambda: replica.directory.caught_up, message="caught up on an empty topic")
        producer.send(BUCKET_REGISTERED, "rustbucket-a", registration("rustbucket-a"))
        producer.send(BUCKET_REGISTERED, "rustbucket-b", registration("rustbucket-b"))
        wait_for(lambda: replica.names() == {"rustbucket-a", "rustbucket-b"}, message="both")

        producer.send_tombstone(BUCKET_REGISTERED, "rustbucket-a")
        producer.send(
            BUCKET_REGISTERED,
            "rustbucket-b",
            registration("rustbucket-b", BucketState.DISABLED),
        )
        wait_for(lambda: replica.names() == set(), message="removed and disabled dropped")
        disabled = replica.directory.buckets(state=BucketState.DISABLED)
        assert [b.name for b in disabled] == ["rustbucket-b"]
        assert replica.directory.get("rustbucket-a") is None
    finally:
        replica.stop()


def test_a_late_older_version_does_not_replace_a_newer_one(
    settings: CommonSettings, producer: EventProducer
) -> None:
    replica = Replica(settings, "poller")
    try:
        wait_for(lambda: replica.directory.caught_up, message="caught up")
        newer = registration("rustbucket-a").model_copy(update={"version": 3, "port": 8443})
        older = registration("rustbucket-a").model_copy(update={"version": 2})
        producer.send(BUCKET_REGISTERED, "rustbucket-a", newer)
        producer.send(BUCKET_REGISTERED, "rustbucket-a", older)
        producer.send(BUCKET_REGISTERED, "rustbucket-z", registration("rustbucket-z"))
        wait_for(lambda: replica.directory.get("rustbucket-z"), message="all three read")
        current = replica.directory.get("rustbucket-a")
        assert current is not None
        assert current.version == 3
        assert current.port == 8443
    finally:
        replica.stop()


def test_the_whole_topic_reader_keeps_every_buckets_current_registration(
    settings: CommonSettings, producer: EventProducer
) -> None:
    # The reader of `rbr run-task` (poller and log-extractor): every partition, no group.
    names = [f"rustbucket-{i:04d}" for i in range(30)]
    for name in names:
        producer.send(BUCKET_REGISTERED, name, registration(name))
    producer.send(BUCKET_REGISTERED, names[0], registration(names[0], BucketState.DISABLED))
    producer.send_tombstone(BUCKET_REGISTERED, names[1])
    producer.flush()
    # Same partitioner as the services' producer, so the bad record follows the good one.
    raw = Producer({"bootstrap.servers": settings.kafka_bootstrap, "partitioner": "murmur2_random"})
    raw.produce(BUCKET_REGISTERED.name, key=names[2], value=b"not an event")
    assert raw.flush(10) == 0

    records = read_registrations(settings, timeout=30)

    assert [r.name for r in records] == sorted(set(names) - {names[1], names[2]})
    assert records[0].state is BucketState.DISABLED
    assert read_registry(settings, timeout=30)[names[2]] is None  # kept as invalid, not current


def test_the_whole_topic_reader_says_when_the_topic_is_missing(broker: Broker) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.delete_topics([BUCKET_REGISTERED.name], operation_timeout=10)[
        BUCKET_REGISTERED.name
    ].result(15)
    with pytest.raises(TopicMissing, match=BUCKET_REGISTERED.name):
        read_registrations(CommonSettings(kafka_bootstrap=broker.bootstrap), timeout=10)
