"""The consumer runner against a real broker: commits, retries, dead letters, drain."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from sqlalchemy.exc import OperationalError

from rbr_runtime.kafka import (
    ConsumerRunner,
    DeadLetterCapExceeded,
    EventProducer,
    Inbound,
    OutgoingMessage,
    PermanentError,
)
from rbr_runtime.settings import CommonSettings
from rbr_schemas import BUCKET_STATUS, BucketStatus, DeadLetterHeaders
from rbr_testing.broker import Broker
from rbr_testing.kafka import committed_offsets, read_topic
from rbr_testing.waiting import wait_for

pytestmark = pytest.mark.broker


def status(name: str, n: int = 0) -> BucketStatus:
    return BucketStatus(
        bucket_id=f"id-{name}",
        name=name,
        polled_at=datetime(2026, 11, 21, 9, 0, n, tzinfo=UTC),
        reachable=True,
        latency_ms=float(n),
    )


@pytest.fixture
def settings(broker: Broker) -> CommonSettings:
    return CommonSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_session_timeout_ms=2000,
        consumer_batch_wait=0.2,
        retry_initial_backoff=0.05,
        retry_max_backoff=0.2,
        dlq_max_consecutive=3,
    )


@pytest.fixture
def producer(settings: CommonSettings) -> Iterator[EventProducer]:
    producer = EventProducer(settings, source="/rbr/test")
    yield producer
    producer.flush()


class RunningConsumer:
    """A ConsumerRunner on a thread, with what it raised."""

    def __init__(self, runner: ConsumerRunner) -> None:
        self.runner = runner
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as error:
            self.error = error

    def stop(self) -> None:
        self.runner.stop()
        self.thread.join(15)
        assert not self.thread.is_alive(), "runner did not stop"


@pytest.fixture
def start(
    settings: CommonSettings, producer: EventProducer
) -> Iterator[Callable[..., RunningConsumer]]:
    started: list[RunningConsumer] = []

    def start_runner(handler: Any, group: str, **kwargs: Any) -> RunningConsumer:
        runner = ConsumerRunner(
            settings,
            group_id=group,
            topics=[BUCKET_STATUS],
            handler=handler,
            producer=producer,
            **kwargs,
        )
        running = RunningConsumer(runner)
        started.append(running)
        return running

    yield start_runner
    for running in started:
        if running.thread.is_alive():
            running.stop()


def committed(settings: CommonSettings, group: str, topic: str) -> dict[int, int]:
    return committed_offsets(settings.kafka_bootstrap, group, topic)


def read_all(settings: CommonSettings, topic: str, expected: int) -> list[Any]:
    return read_topic(settings.kafka_bootstrap, topic, at_least=expected)


def test_handles_every_message_and_commits_after(
    settings: CommonSettings, producer: EventProducer, start: Callable[..., RunningConsumer]
) -> None:
    seen: list[str] = []
    names = [f"bucket-{i}" for i in range(30)]
    for name in names:
        producer.send(BUCKET_STATUS, name, status(name))

    running = start(lambda batch: seen.extend(m.data.name for m in batch), "g-commit")
    wait_for(lambda: len(seen) >= 30, message="30 messages handled")
    running.stop()

    assert sorted(seen) == sorted(names)
    assert sum(committed(settings, "g-commit", BUCKET_STATUS.name).values()) == 30


def test_transient_failure_is_retried_not_skipped(
    settings: CommonSettings, producer: EventProducer, start: Callable[..., RunningConsumer]
) -> None:
    attempts: list[int] = []
    handled: list[str] = []

    def flaky(batch: Sequence[Inbound[BucketStatus]]) -> None:
        attempts.append(len(batch))
        if len(attempts) <= 3:
            raise ConnectionError("database is down")
        handled.extend(m.data.name for m in batch)

    producer.send(BUCKET_STATUS, "bucket-a", status("bucket-a"))
    running = start(flaky, "g-retry")
    wait_for(lambda: handled, message="handled after retries")
    running.stop()

    assert handled == ["bucket-a"]
    assert len(attempts) == 4
    assert sum(committed(settings, "g-retry", BUCKET_STATUS.name).values()) == 1


def test_uncommitted_batch_is_redelivered_after_stop(
    settings: CommonSettings, producer: EventProducer, start: Callable[..., RunningConsumer]
) -> None:
    failing_calls: list[int] = []

    def always_down(batch: Sequence[Inbound[BucketStatus]]) -> None:
        failing_calls.append(1)
        raise TimeoutError("S3 unreachable")

    producer.send(BUCKET_STATUS, "bucket-a", status("bucket-a"))
    first = start(always_down, "g-redeliver")
    wait_for(lambda: len(failing_calls) >= 2, message="two failed attempts")
    first.stop()
    assert committed(settings, "g-redeliver", BUCKET_STATUS.name) == {}

    handled: list[str] = []
    second = start(lambda batch: handled.extend(m.data.name for m in batch), "g-redeliver")
    wait_for(lambda: handled, message="redelivery to the next member")
    second.stop()
    assert handled == ["bucket-a"]


def test_poison_message_goes_to_dlq_with_reason_and_the_rest_is_handled(
    settings: CommonSettings, producer: EventProducer, start: Callable[..., RunningConsumer]
) -> None:
    handled: list[str] = []

    def reject_evil(batch: Sequence[Inbound[BucketStatus]]) -> None:
        for message in batch:
            if message.data.name == "bucket-evil":
                raise PermanentError("bucket-evil cannot be processed: bad state")
        handled.extend(m.data.name for m in batch)

    for name in ["bucket-a", "bucket-evil", "bucket-b"]:
        producer.send(BUCKET_STATUS, name, status(name))

    running = start(reject_evil, "g-poison")
    wait_for(lambda: {"bucket-a", "bucket-b"} <= set(handled), message="good messages handled")
    dead = read_all(settings, BUCKET_STATUS.dlq, 1)
    running.stop()

    assert "bucket-evil" not in handled
    assert dead[0].key() == b"bucket-evil"
    headers = DeadLetterHeaders.from_kafka(dead[0].headers())
    assert headers.source_topic == BUCKET_STATUS.name
    assert headers.consumer_group == "g-poison"
    assert headers.error_class == "rejected"
    assert "bad state" in headers.error
    assert sum(committed(settings, "g-poison", BUCKET_STATUS.name).values()) == 3


def test_undecodable_message_is_dead_lettered_without_reaching_the_handler(
    settings: CommonSettings, producer: EventProducer, start: Callable[..., RunningConsumer]
) -> None:
    handled: list[str] = []
    producer.send_messages(
        [OutgoingMessage(BUCKET_STATUS.name, "bucket-x", b'{"specversion": "1.0", "junk": ')]
    )
    producer.send(BUCKET_STATUS, "bucket-x", status("bucket-x"))

    running = start(lambda batch: handled.extend(m.data.name for m in batch), "g-undecodable")
    wait_for(lambda: handled, message="valid message handled")
    dead = read_all(settings, BUCKET_STATUS.dlq, 1)
    running.stop()

    headers = DeadLetterHeaders.from_kafka(dead[0].headers())
    assert headers.error_class == "undecodable"
    assert "not a valid bucket.status event" in headers.error
    assert dead[0].value() == b'{"specversion": "1.0", "junk": '
    assert handled == ["bucket-x"]


def test_consumer_stops_instead_of_dead_lettering_everything(
    settings: CommonSettings, producer: EventProducer, start: Callable[..., RunningConsumer]
) -> None:
    def reject_all(batch: Sequence[Inbound[BucketStatus]]) -> None:
        raise PermanentError("schema mismatch")

    for i in range(6):
        producer.send(BUCKET_STATUS, "bucket-a", status("bucket-a", i))

    running = start(reject_all, "g-cap")
    running.thread.join(30)

    assert isinstance(running.error, DeadLetterCapExceeded)
    assert len(read_all(settings, BUCKET_STATUS.dlq, 3)) == 3
    assert sum(committed(settings, "g-cap", BUCKET_STATUS.name).values()) < 6


def test_stop_drains_the_batch_in_hand_and_commits_it(
    settings: CommonSettings, producer: EventProducer, start: Callable[..., RunningConsumer]
) -> None:
    entered = threading.Event()
    release = threading.Event()
    handled: list[str] = []

    def slow(batch: Sequence[Inbound[BucketStatus]]) -> None:
        entered.set()
        release.wait(10)
        handled.extend(m.data.name for m in batch)

    producer.send(BUCKET_STATUS, "bucket-a", status("bucket-a"))
    running = start(slow, "g-drain")
    assert entered.wait(20)
    running.runner.stop()
    release.set()
    running.thread.join(15)

    assert handled == ["bucket-a"]
    assert running.error is None
    assert sum(committed(settings, "g-drain", BUCKET_STATUS.name).values()) == 1


def test_long_outage_keeps_group_membership(
    broker: Broker, producer: EventProducer, start: Callable[..., RunningConsumer]
) -> None:
    """Retrying longer than max.poll.interval.ms must not get the member kicked out."""
    assignments: list[list[TopicPartition]] = []
    failing_until = [True]
    handled: list[str] = []

    def down_then_up(batch: Sequence[Inbound[BucketStatus]]) -> None:
        if failing_until[0]:
            raise ConnectionError("database is down")
        handled.extend(m.data.name for m in batch)

    short = CommonSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_session_timeout_ms=2000,
        kafka_max_poll_interval_ms=3000,
        consumer_batch_wait=0.2,
        retry_initial_backoff=0.5,
        retry_max_backoff=1.0,
    )
    producer.send(BUCKET_STATUS, "bucket-a", status("bucket-a"))
    runner = ConsumerRunner(
        short,
        group_id="g-outage",
        topics=[BUCKET_STATUS],
        handler=down_then_up,
        producer=producer,
        on_assign=assignments.append,
    )
    running = RunningConsumer(runner)
    wait_for(lambda: runner.retrying_since is not None, message="retrying")
    assert runner.readiness() is None
    assert "retrying a failing batch" in (runner.readiness(stuck_after=0.0) or "")
    time.sleep(5)  # the outage must outlast max.poll.interval.ms: that is the point
    failing_until[0] = False
    wait_for(lambda: handled, message="handled once the outage ends")
    running.stop()

    assert handled == ["bucket-a"]
    assert len(assignments) == 1, "the member was rebalanced out during the outage"


def test_rejections_caused_outside_the_system_do_not_stop_the_consumer(
    settings: CommonSettings, producer: EventProducer, start: Callable[..., RunningConsumer]
) -> None:
    handled: list[str] = []

    def channel_down(batch: Sequence[Inbound[BucketStatus]]) -> None:
        handled.extend(m.data.name for m in batch)
        raise PermanentError("the receiving system refused it", counts_toward_cap=False)

    for i in range(6):
        producer.send(BUCKET_STATUS, f"bucket-{i}", status(f"bucket-{i}", i))

    running = start(channel_down, "g-external")
    dead = read_all(settings, BUCKET_STATUS.dlq, 6)
    wait_for(
        lambda: sum(committed(settings, "g-external", BUCKET_STATUS.name).values()) == 6,
        message="all six committed",
    )
    running.stop()

    assert running.error is None
    assert len(dead) == 6


def test_partition_revoked_and_assigned_back_mid_batch_loses_nothing(
    settings: CommonSettings, producer: EventProducer, start: Callable[..., RunningConsumer]
) -> None:
    """A rebalance that takes a partition away and gives it back while a batch is in hand.

    The batch's records are dropped (the partition was revoked); the runner must fetch them
    again rather than commit past them.
    """
    handled: list[str] = []
    rebalanced: list[bool] = []
    runner_box: list[ConsumerRunner] = []

    def rebalance_during_first_batch(batch: Sequence[Inbound[BucketStatus]]) -> None:
        if not rebalanced:
            rebalanced.append(True)
            runner = runner_box[0]
            consumer = runner._consumer
            partitions = [TopicPartition(m.topic, m.partition) for m in batch]
            runner._on_revoke(consumer, partitions)
            runner._on_assign(consumer, partitions)
            raise ConnectionError("interrupted by the rebalance")
        handled.extend(m.data.name for m in batch)

    names = [f"bucket-{i}" for i in range(10)]
    for name in names:
        producer.send(BUCKET_STATUS, name, status(name))
    running = start(rebalance_during_first_batch, "g-reassigned")
    runner_box.append(running.runner)
    wait_for(
        lambda: set(names) <= set(handled), message="every message handled after the rebalance"
    )
    running.stop()
    assert sum(committed(settings, "g-reassigned", BUCKET_STATUS.name).values()) == 10


def test_a_message_the_handler_cannot_cope_with_is_dead_lettered_after_a_few_tries(
    broker: Broker, producer: EventProducer, start: Callable[..., RunningConsumer]
) -> None:
    """A bug hit by one (hostile) message must not block its partition forever."""
    attempts: list[str] = []
    handled: list[str] = []

    def crashes_on_one(batch: Sequence[Inbound[BucketStatus]]) -> None:
        for message in batch:
            if message.data.name == "bucket-poison":
                attempts.append(message.data.name)
                raise OverflowError("date value out of range")
        handled.extend(m.data.name for m in batch)

    settings = CommonSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_session_timeout_ms=2000,
        consumer_batch_wait=0.2,
        retry_initial_backoff=0.05,
        retry_max_backoff=0.1,
        unexpected_error_retries=2,
    )
    for name in ["bucket-a", "bucket-poison", "bucket-b"]:
        producer.send(BUCKET_STATUS, name, status(name))
    runner = ConsumerRunner(
        settings,
        group_id="g-fault",
        topics=[BUCKET_STATUS],
        handler=crashes_on_one,
        producer=producer,
    )
    running = RunningConsumer(runner)
    (dead,) = read_all(settings, BUCKET_STATUS.dlq, 1)
    wait_for(lambda: {"bucket-a", "bucket-b"} <= set(handled), message="the others handled")
    wait_for(
        lambda: sum(committed(settings, "g-fault", BUCKET_STATUS.name).values()) == 3,
        message="all committed",
    )
    running.stop()

    headers = DeadLetterHeaders.from_kafka(dead.headers())
    assert dead.key() == b"bucket-poison"
    assert headers.error_class == "handler_error"
    assert headers.error == "OverflowError: date value out of range"
    assert running.error is None


def test_outages_outlast_the_unexpected_error_budget(
    broker: Broker, producer: EventProducer, start: Callable[..., RunningConsumer]
) -> None:
    failures: list[int] = []
    handled: list[str] = []

    def database_down_for_a_while(batch: Sequence[Inbound[BucketStatus]]) -> None:
        if len(failures) < 6:
            failures.append(1)
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("db down"))
        handled.extend(m.data.name for m in batch)

    settings = CommonSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_session_timeout_ms=2000,
        consumer_batch_wait=0.2,
        retry_initial_backoff=0.05,
        retry_max_backoff=0.1,
        unexpected_error_retries=1,
    )
    producer.send(BUCKET_STATUS, "bucket-a", status("bucket-a"))
    runner = ConsumerRunner(
        settings,
        group_id="g-outage-budget",
        topics=[BUCKET_STATUS],
        handler=database_down_for_a_while,
        producer=producer,
    )
    running = RunningConsumer(runner)
    wait_for(lambda: handled, message="handled once the database is back")
    running.stop()
    assert handled == ["bucket-a"]
    assert read_topic(settings.kafka_bootstrap, BUCKET_STATUS.dlq) == []
