"""The consumer runner against a real broker: commits, retries, dead letters, drain."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy.exc import OperationalError

from rbr_runtime.kafka import (
    ConsumerRunner,
    DeadLetterCapExceeded,
    EventProducer,
    Inbound,
    OutgoingMessage,
    PermanentError,
    Rejection,
    UndecodableMessage,
)
from rbr_runtime.kafka.config import consumer_config
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


def test_undecodable_message_is_dead_lettered_and_never_handled(
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


def test_undecodable_message_mid_batch_is_dead_lettered_and_the_rest_handled(
    settings: CommonSettings, producer: EventProducer, start: Callable[..., RunningConsumer]
) -> None:
    """Events are validated when read: the handler stops at the bad one, then gets the rest."""
    calls: list[list[str]] = []
    producer.send(BUCKET_STATUS, "bucket-m", status("bucket-m", 0))
    producer.send_messages([OutgoingMessage(BUCKET_STATUS.name, "bucket-m", b"[1, 2")])
    producer.send(BUCKET_STATUS, "bucket-m", status("bucket-m", 2))

    def handle(batch: Sequence[Inbound[BucketStatus]]) -> None:
        calls.append([f"{m.offset}:{m.data.latency_ms:.0f}" for m in batch])

    running = start(handle, "g-mid-batch")
    dead = read_all(settings, BUCKET_STATUS.dlq, 1)
    wait_for(
        lambda: sum(committed(settings, "g-mid-batch", BUCKET_STATUS.name).values()) == 3,
        message="all three committed",
    )
    running.stop()

    assert dead[0].value() == b"[1, 2"
    assert DeadLetterHeaders.from_kafka(dead[0].headers()).error_class == "undecodable"
    handled = [entry for call in calls for entry in call]
    assert sorted(set(handled)) == ["0:0", "2:2"], "each valid message handled, the bad one never"
    assert running.error is None


def test_a_batch_of_nothing_but_undecodable_messages_is_dead_lettered_whole(
    settings: CommonSettings, producer: EventProducer, start: Callable[..., RunningConsumer]
) -> None:
    """Every message of the batch invalid: each dead-lettered once, no empty call, committed."""
    batches: list[int] = []
    bad = [b"{", b"[1, 2", b'{"specversion": "1.0"}']
    producer.send_messages([OutgoingMessage(BUCKET_STATUS.name, "bucket-u", v) for v in bad])

    def handle(batch: Sequence[Inbound[BucketStatus]]) -> None:
        batches.append(len(batch))
        for message in batch:
            assert message.data.name == "bucket-u"

    running = start(handle, "g-all-bad", batch_size=10)
    dead = read_all(settings, BUCKET_STATUS.dlq, 3)
    wait_for(
        lambda: sum(committed(settings, "g-all-bad", BUCKET_STATUS.name).values()) == 3,
        message="all three committed",
    )
    producer.send(BUCKET_STATUS, "bucket-u", status("bucket-u"))
    wait_for(
        lambda: sum(committed(settings, "g-all-bad", BUCKET_STATUS.name).values()) == 4,
        message="the valid one after them committed",
    )
    running.stop()

    assert sorted(m.value() for m in dead) == sorted(bad)
    assert {DeadLetterHeaders.from_kafka(m.headers()).error_class for m in dead} == {"undecodable"}
    assert 0 not in batches, "the handler was called with an empty batch"
    assert running.error is None


def test_null_value_on_a_topic_without_tombstones_is_dead_lettered(
    settings: CommonSettings, producer: EventProducer, start: Callable[..., RunningConsumer]
) -> None:
    """A handler that only asks `is_tombstone` still learns the message is invalid."""
    skipped: list[int] = []
    producer.send_messages([OutgoingMessage(BUCKET_STATUS.name, "bucket-n", None)])
    producer.send(BUCKET_STATUS, "bucket-n", status("bucket-n"))

    def handle(batch: Sequence[Inbound[BucketStatus]]) -> None:
        skipped.extend(m.offset for m in batch if m.is_tombstone)

    running = start(handle, "g-null")
    dead = read_all(settings, BUCKET_STATUS.dlq, 1)
    wait_for(
        lambda: sum(committed(settings, "g-null", BUCKET_STATUS.name).values()) == 2,
        message="both committed",
    )
    running.stop()

    assert dead[0].value() is None
    headers = DeadLetterHeaders.from_kafka(dead[0].headers())
    assert headers.error_class == "undecodable"
    assert "carries no tombstones" in headers.error
    assert skipped == []


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


def run_with_two_fault_retries(
    broker: Broker, producer: EventProducer, group: str, handler: Any
) -> tuple[CommonSettings, RunningConsumer]:
    """Starts a runner that retries a handler's unexpected errors twice, quickly."""
    settings = CommonSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_session_timeout_ms=2000,
        consumer_batch_wait=0.2,
        retry_initial_backoff=0.05,
        retry_max_backoff=0.1,
        unexpected_error_retries=2,
    )
    runner = ConsumerRunner(
        settings, group_id=group, topics=[BUCKET_STATUS], handler=handler, producer=producer
    )
    return settings, RunningConsumer(runner)


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

    for name in ["bucket-a", "bucket-poison", "bucket-b"]:
        producer.send(BUCKET_STATUS, name, status(name))
    settings, running = run_with_two_fault_retries(broker, producer, "g-fault", crashes_on_one)
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


def test_an_undecodable_error_naming_a_valid_message_is_a_fault(
    broker: Broker, producer: EventProducer
) -> None:
    """Only a message that fails to decode is dropped from its batch; anything else retries."""
    calls: list[int] = []

    def blames_a_valid_message(batch: Sequence[Inbound[BucketStatus]]) -> None:
        calls.append(len(batch))
        error = UndecodableMessage("the handler's own parsing failed")
        error.message = batch[0]
        raise error

    producer.send(BUCKET_STATUS, "bucket-blamed", status("bucket-blamed"))
    settings, running = run_with_two_fault_retries(
        broker, producer, "g-blamed", blames_a_valid_message
    )
    (dead,) = read_all(settings, BUCKET_STATUS.dlq, 1)
    running.stop()

    headers = DeadLetterHeaders.from_kafka(dead.headers())
    assert headers.error_class == "handler_error"
    assert calls == [1, 1, 1], "retried twice, then dead-lettered: not called without end"


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


# -- handlers off the poll thread ------------------------------------------------------------


def partitions_of(settings: CommonSettings, topic: str, expected: int) -> dict[str, int]:
    """Returns the partition each key landed on (keys are bucket names)."""
    return {
        (m.key() or b"").decode(): m.partition() or 0 for m in read_all(settings, topic, expected)
    }


def test_a_handler_far_slower_than_the_poll_interval_keeps_the_member_and_the_rest_flowing(
    broker: Broker, producer: EventProducer
) -> None:
    """A handler holding one message for 10 minutes, against the default 300 s interval.

    librdkafka evicts a member whose application has not polled for max.poll.interval.ms,
    whatever its value. Holding the handler for twice a 3 s interval (its lowest useful
    value with a 2 s session) exercises the same rule as holding it 10 minutes against the
    300 s default, in seconds: the poll loop's pace does not depend on the handler's.
    """
    interval_ms = 3000
    settings = CommonSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_session_timeout_ms=2000,
        kafka_max_poll_interval_ms=interval_ms,
        consumer_batch_wait=0.2,
    )
    held = threading.Event()
    release = threading.Event()
    calls: list[str] = []
    handled: list[str] = []
    assignments: list[list[TopicPartition]] = []

    def slow_on_one(batch: Sequence[Inbound[BucketStatus]]) -> None:
        for message in batch:
            calls.append(message.data.name)
            if message.data.name == "bucket-slow":
                held.set()
                release.wait(120)
            handled.append(message.data.name)

    first_wave = ["bucket-slow"] + [f"bucket-{i}" for i in range(20)]
    for name in first_wave:
        producer.send(BUCKET_STATUS, name, status(name))
    runner = ConsumerRunner(
        settings,
        group_id="g-slow",
        topics=[BUCKET_STATUS],
        handler=slow_on_one,
        producer=producer,
        on_assign=assignments.append,
    )
    running = RunningConsumer(runner)
    assert held.wait(30), "the slow message never reached the handler"
    held_since = time.monotonic()
    wait_for(
        lambda: time.monotonic() - held_since > 2 * interval_ms / 1000,
        timeout=30,
        message="the handler held past twice max.poll.interval.ms",
    )

    second_wave = [f"bucket-late-{i}" for i in range(20)]
    for name in second_wave:
        producer.send(BUCKET_STATUS, name, status(name))
    where = partitions_of(settings, BUCKET_STATUS.name, len(first_wave) + len(second_wave))
    slow_partition = where["bucket-slow"]
    elsewhere = {n for n in first_wave + second_wave if where[n] != slow_partition}
    wait_for(lambda: elsewhere <= set(handled), message="the other partitions handled")
    behind_slow = [n for n in first_wave + second_wave if where[n] == slow_partition]
    slow_offset = behind_slow.index("bucket-slow")
    offsets = committed(settings, "g-slow", BUCKET_STATUS.name)
    assert offsets.get(slow_partition, 0) <= slow_offset, "committed past the message in hand"
    assert len(assignments) == 1, "the member was evicted and rejoined while the handler ran"

    release.set()
    total = len(first_wave) + len(second_wave)
    wait_for(
        lambda: sum(committed(settings, "g-slow", BUCKET_STATUS.name).values()) == total,
        message="everything committed",
    )
    running.stop()

    assert calls.count("bucket-slow") == 1, "the slow message was handled again"
    assert sorted(handled) == sorted(first_wave + second_wave)
    assert len(assignments) == 1
    assert running.error is None


@pytest.mark.parametrize("how", ["returned", "raised"])
def test_rejecting_message_k_of_a_batch_dead_letters_only_it(
    settings: CommonSettings,
    producer: EventProducer,
    start: Callable[..., RunningConsumer],
    how: str,
) -> None:
    """The handler names the one bad message; no message reaches the handler twice."""
    calls: list[int] = []

    def reject_the_third(batch: Sequence[Inbound[BucketStatus]]) -> Any:
        rejected = [m for m in batch if m.data.latency_ms == 2.0]
        for message in batch:
            calls.append(int(message.data.latency_ms))
            if how == "raised" and message in rejected:
                raise PermanentError("reading 2 is out of range", message=message)
        return [Rejection(m, "reading 2 is out of range") for m in rejected]

    for n in range(6):  # one key: one partition, handed over in order
        producer.send(BUCKET_STATUS, "bucket-a", status("bucket-a", n))
    running = start(reject_the_third, "g-reject-k", batch_size=10)
    (dead,) = read_all(settings, BUCKET_STATUS.dlq, 1)
    wait_for(
        lambda: sum(committed(settings, "g-reject-k", BUCKET_STATUS.name).values()) == 6,
        message="all six committed",
    )
    running.stop()

    headers = DeadLetterHeaders.from_kafka(dead.headers())
    assert headers.source_offset == 2
    assert headers.error_class == "rejected"
    assert headers.error == "reading 2 is out of range"
    assert sorted(calls) == [0, 1, 2, 3, 4, 5], "a message reached the handler twice, or never"
    assert running.error is None


def test_the_commit_point_waits_for_the_message_in_hand(
    settings: CommonSettings, producer: EventProducer, start: Callable[..., RunningConsumer]
) -> None:
    """A partition's commit point waits for its message in hand; other partitions go on.

    (Out-of-order finishing within a batch, a dead letter before the messages ahead of it,
    is covered by test_consumer_lanes.)
    """
    held = threading.Event()
    release = threading.Event()
    handled: list[str] = []

    def hold_bucket_a(batch: Sequence[Inbound[BucketStatus]]) -> None:
        for message in batch:
            if message.data.name == "bucket-a":
                held.set()
                release.wait(60)
            handled.append(message.data.name)

    producer.send(BUCKET_STATUS, "bucket-a", status("bucket-a"))
    producer.send(BUCKET_STATUS, "bucket-a", status("bucket-a-next"))  # same key, same partition
    running = start(hold_bucket_a, "g-contiguous")
    assert held.wait(30)

    # Meanwhile, messages on the other partitions get committed.
    later = [f"bucket-{i}" for i in range(24)]
    for name in later:
        producer.send(BUCKET_STATUS, name, status(name))
    where = partitions_of(settings, BUCKET_STATUS.name, 2 + len(later))
    held_partition = where["bucket-a"]
    elsewhere = Counter(where[name] for name in later if where[name] != held_partition)
    wait_for(
        lambda: all(
            committed(settings, "g-contiguous", BUCKET_STATUS.name).get(p) == n
            for p, n in elsewhere.items()
        ),
        message="the other partitions committed",
    )
    assert held_partition not in committed(settings, "g-contiguous", BUCKET_STATUS.name)

    release.set()
    wait_for(
        lambda: (
            committed(settings, "g-contiguous", BUCKET_STATUS.name).get(held_partition)
            == 2 + sum(1 for name in later if where[name] == held_partition)
        ),
        message="the held partition committed once its first message is done",
    )
    running.stop()
    assert handled.count("bucket-a") == 1
    assert handled.count("bucket-a-next") == 1


class CommitWatch:
    """Samples a group's committed offsets and records any that pass an unfinished message."""

    def __init__(
        self, settings: CommonSettings, group: str, where: dict[str, int], finished: set[str]
    ) -> None:
        self.finished = finished
        self.violations: list[str] = []
        self.samples = 0
        self._settings = settings
        self._group = group
        self._where = where
        self._order: dict[int, list[str]] = {}
        for name, partition in where.items():
            self._order.setdefault(partition, []).append(name)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            offsets = committed(self._settings, self._group, BUCKET_STATUS.name)
            finished = set(self.finished)  # after reading: a commit follows its finish
            for partition, offset in offsets.items():
                unfinished = [n for n in self._order[partition][:offset] if n not in finished]
                if unfinished:
                    self.violations.append(f"partition {partition} at {offset}: {unfinished}")
            self.samples += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def test_a_member_joining_mid_work_loses_nothing_and_commits_nothing_unfinished(
    broker: Broker, producer: EventProducer
) -> None:
    """A second member joins while the first has batches in hand, one held past the drain."""
    settings = CommonSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_session_timeout_ms=2000,
        consumer_batch_wait=0.2,
        consumer_drain_timeout=1.0,
    )
    early = [f"bucket-{i}" for i in range(60)]
    late = [f"bucket-late-{i}" for i in range(60)]
    held = threading.Event()
    release = threading.Event()
    second_joined = threading.Event()
    handled: dict[str, list[str]] = {"first": [], "second": []}
    finished: set[str] = set()

    def member(which: str) -> Callable[[Sequence[Inbound[BucketStatus]]], None]:
        def handle(batch: Sequence[Inbound[BucketStatus]]) -> None:
            for message in batch:
                name = message.data.name
                if which == "first" and name == "bucket-7":
                    held.set()
                    release.wait(60)  # past the drain timeout: abandoned at the rebalance
                if which == "first" and name in late:
                    second_joined.wait(30)  # in hand when the rebalance starts
                handled[which].append(name)
                finished.add(name)

        return handle

    def runner(which: str, **kwargs: Any) -> ConsumerRunner:
        return ConsumerRunner(
            settings,
            group_id="g-join",
            topics=[BUCKET_STATUS],
            handler=member(which),
            producer=producer,
            **kwargs,
        )

    for name in early:
        producer.send(BUCKET_STATUS, name, status(name))
    first = RunningConsumer(runner("first"))
    assert held.wait(30)
    for name in late:
        producer.send(BUCKET_STATUS, name, status(name))
    watch = CommitWatch(
        settings, "g-join", partitions_of(settings, BUCKET_STATUS.name, 120), finished
    )
    second = RunningConsumer(runner("second", on_assign=lambda _: second_joined.set()))
    wait_for(lambda: handled["second"], message="the second member at work")
    release.set()
    wait_for(
        lambda: sum(committed(settings, "g-join", BUCKET_STATUS.name).values()) == 120,
        message="everything committed",
    )
    first.stop()
    second.stop()
    watch.stop()

    assert set(handled["first"]) | set(handled["second"]) == set(early + late), "lost messages"
    assert watch.samples > 0
    assert watch.violations == [], "an offset was committed past an unfinished message"
    assert first.error is None
    assert second.error is None


def test_backpressure_pauses_and_resumes_a_partition_without_skipping(
    broker: Broker, producer: EventProducer
) -> None:
    """A pause drops the client's prefetched messages; the resume must fetch them again."""
    settings = CommonSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_session_timeout_ms=2000,
        consumer_batch_wait=0.2,
        consumer_buffer_size=4,
    )
    handled: list[int] = []
    runner_box: list[ConsumerRunner] = []

    def first_waits_for_the_pause(batch: Sequence[Inbound[BucketStatus]]) -> None:
        if not handled:
            runner = runner_box[0]
            wait_for(
                lambda: any(lane.paused for lane in runner._lanes.values()),
                message="the partition paused, its buffer full",
            )
        handled.extend(int(m.data.latency_ms) for m in batch)

    producer.send_events(
        BUCKET_STATUS,
        [("bucket-a", producer.event(BUCKET_STATUS, status("bucket-a", n))) for n in range(60)],
    )
    runner = ConsumerRunner(
        settings,
        group_id="g-backpressure",
        topics=[BUCKET_STATUS],
        handler=first_waits_for_the_pause,
        producer=producer,
        batch_size=3,
    )
    runner_box.append(runner)
    running = RunningConsumer(runner)
    wait_for(
        lambda: sum(committed(settings, "g-backpressure", BUCKET_STATUS.name).values()) == 60,
        message="all sixty committed",
    )
    running.stop()

    assert handled == list(range(60)), "a message skipped, repeated or out of order"
    assert running.error is None


def test_a_partition_paused_for_backpressure_flows_again_after_a_rebalance(
    broker: Broker, producer: EventProducer
) -> None:
    """librdkafka keeps a partition's pause across a rebalance; the runner must resume it.

    The partition is paused (its buffer full) when a second member joins and leaves: the
    partition is revoked and assigned again, to this member or, in between, to the other.
    """
    settings = CommonSettings(
        kafka_bootstrap=broker.bootstrap,
        kafka_session_timeout_ms=2000,
        consumer_batch_wait=0.2,
        consumer_buffer_size=4,
        consumer_drain_timeout=0.2,
    )
    gate = threading.Event()
    handled: list[int] = []
    assignments: list[list[TopicPartition]] = []

    def held_until_the_gate_opens(batch: Sequence[Inbound[BucketStatus]]) -> None:
        gate.wait(60)
        handled.extend(int(m.data.latency_ms) for m in batch)

    for n in range(30):  # one key: one partition, far more than its buffer
        producer.send(BUCKET_STATUS, "bucket-a", status("bucket-a", n))
    runner = ConsumerRunner(
        settings,
        group_id="g-paused",
        topics=[BUCKET_STATUS],
        handler=held_until_the_gate_opens,
        producer=producer,
        batch_size=1,
        on_assign=assignments.append,
    )
    running = RunningConsumer(runner)
    wait_for(
        lambda: any(lane.paused for lane in runner._lanes.values()),
        message="the partition paused, its buffer full",
    )

    other_assigned = threading.Event()
    other = Consumer(consumer_config(settings, "g-paused"))
    other.subscribe([BUCKET_STATUS.name], on_assign=lambda *_: other_assigned.set())
    wait_for(lambda: other.consume(10, 0.1) is not None and other_assigned.is_set())
    other.close()
    wait_for(lambda: len(assignments) >= 3, message="assigned again after the other left")

    gate.set()
    wait_for(lambda: sorted(set(handled)) == list(range(30)), message="every message handled")
    wait_for(
        lambda: sum(committed(settings, "g-paused", BUCKET_STATUS.name).values()) == 30,
        message="all thirty committed",
    )
    running.stop()
    assert running.error is None
