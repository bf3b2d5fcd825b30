"""The consumer runner: at-least-once delivery of validated events to plain handler functions.

A handler takes a batch of `Inbound` events of one partition and returns once every side
effect is durable. It runs on a worker thread while the poll loop keeps polling; the runner
handles each partition in offset order, pauses partitions that fetch too far ahead, commits
only contiguous finished offsets, dead-letters what a handler rejects or cannot decode, and
retries outages forever and bugs a few times. Handlers must be idempotent. The guarantees in
full: runtime/README.md, "The consumer runner".
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Counter, Gauge

from rbr_runtime.kafka.batches import (
    BATCH_SECONDS,
    HANDLER_RETRIES,
    MESSAGES_DEAD_LETTERED,
    Abandoned,
    BatchProcessor,
    dead_letter_message,
)
from rbr_runtime.kafka.config import consumer_config
from rbr_runtime.kafka.lanes import Lane
from rbr_runtime.kafka.messages import (
    DataT,
    DeadLetterCapExceeded,
    Handler,
    Headers,
    Inbound,
    PartitionCallback,
    PermanentError,
    Record,
    Rejection,
    TopicPartitionKey,
    decode_record,
    message_headers,
)
from rbr_runtime.kafka.producer import EventProducer
from rbr_runtime.retry import backoff_delay
from rbr_runtime.settings import CommonSettings
from rbr_schemas import TopicSpec

__all__ = [
    "BATCH_SECONDS",
    "CONSUMER_LAG",
    "HANDLER_RETRIES",
    "MESSAGES_DEAD_LETTERED",
    "MESSAGES_PROCESSED",
    "ConsumerRunner",
    "DataT",
    "DeadLetterCapExceeded",
    "Handler",
    "Headers",
    "Inbound",
    "PartitionCallback",
    "PermanentError",
    "Record",
    "Rejection",
    "backoff_delay",
    "dead_letter_message",
    "decode_record",
    "message_headers",
]

log = logging.getLogger(__name__)

MESSAGES_PROCESSED = Counter(
    "rbr_messages_processed_total", "Messages handled and committed.", ["group", "topic"]
)
CONSUMER_LAG = Gauge(
    "rbr_consumer_lag", "Messages behind the end of the partition.", ["group", "topic", "partition"]
)

FETCH_MAX = 500
"""Most messages taken from the client per poll."""
POLL_WAIT_MAX = 0.2
"""Longest the poll loop waits for messages before tending to commits and pauses."""
POLL_WAIT_BUSY = 0.01
"""How long it waits while batches are in hand or finished uncommitted: a paused partition
is resumed and a finished batch committed within this, not a whole idle wait later."""
COMMIT_INTERVAL = 0.05
"""Least time between two commits of the poll loop: a commit is a round trip to the broker,
so at full speed one per fetch would cost more than the messages (revokes and stopping
commit at once)."""


class ConsumerRunner:
    """Runs one consumer group member over some topics, calling a handler per batch."""

    def __init__(
        self,
        settings: CommonSettings,
        *,
        group_id: str,
        topics: Sequence[TopicSpec],
        handler: Handler,
        producer: EventProducer,
        batch_size: int | None = None,
        on_assign: PartitionCallback | None = None,
        on_revoke: PartitionCallback | None = None,
    ) -> None:
        self.group_id = group_id
        self._settings = settings
        self._specs = {spec.name: spec for spec in topics}
        self._batch_size = batch_size or settings.consumer_batch_size
        self._user_on_assign = on_assign
        self._user_on_revoke = on_revoke
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._lock = threading.Condition()
        self._lanes: dict[TopicPartitionKey, Lane] = {}
        self._orphans: list[Lane] = []
        self._ready: queue.SimpleQueue[Lane | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._fatal: BaseException | None = None
        self._next_commit = 0.0
        self._assigned_since_poll: list[TopicPartition] = []
        self._processor = BatchProcessor(
            settings,
            group_id=group_id,
            specs=self._specs,
            handler=handler,
            producer=producer,
            stop=self._stop,
        )
        self.joined = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Asks the runner to finish the batches in hand, commit and leave the group."""
        self._stop.set()

    def readiness(self, stuck_after: float = 60.0) -> str | None:
        """Readiness check: None when joined and not stuck retrying an outage."""
        if not self.joined.is_set():
            return f"joining consumer group {self.group_id}"
        since = self.retrying_since
        if since is not None and time.monotonic() - since > stuck_after:
            return f"retrying a failing batch for {time.monotonic() - since:.0f}s (see logs)"
        return None

    @property
    def retrying_since(self) -> float | None:
        """When the longest-failing batch in hand started retrying (None: none is)."""
        with self._lock:
            moments = [lane.retrying_since for lane in self._lanes.values()]
        return min((m for m in moments if m is not None), default=None)

    @property
    def stopping(self) -> bool:
        """Tells whether stop() was called."""
        return self._stop.is_set()

    def run(self) -> None:
        """Consumes until stop() is called.

        Raises:
            DeadLetterCapExceeded: too many consecutive messages were dead-lettered.
            KafkaException: the client hit a fatal error.
        """
        self._consumer = Consumer(consumer_config(self._settings, self.group_id))
        self._consumer.subscribe(
            list(self._specs),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._start_workers()
        log.info("consumer started", extra={"group": self.group_id, "topics": list(self._specs)})
        idle_wait = min(self._settings.consumer_batch_wait, POLL_WAIT_MAX)
        try:
            while not self._stop.is_set():
                self._poll(POLL_WAIT_BUSY if self._in_flight() else idle_wait)
            self._drain()
            if self._fatal is not None:
                raise self._fatal
        finally:
            self._close()

    def _start_workers(self) -> None:
        for number in range(self._settings.consumer_concurrency):
            worker = threading.Thread(
                target=self._work, name=f"{self.group_id}-handler-{number}", daemon=True
            )
            worker.start()
            self._workers.append(worker)

    def _close(self) -> None:
        self._stop.set()  # retrying batches give up; nothing new starts
        for _ in self._workers:
            self._ready.put(None)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()
        log.info("consumer stopped", extra={"group": self.group_id})

    def _drain(self) -> None:
        """Stops fetching, waits for the batches in hand, commits them."""
        consumer = self._consumer
        assert consumer is not None
        self._pause(consumer, consumer.assignment())
        while self._owned_busy():
            # Polling serves heartbeats and rebalances while the handlers finish.
            self._take_all(consumer.consume(FETCH_MAX, POLL_WAIT_MAX))
            self._commit(self._owned())
        self._commit(self._owned())

    # -- the poll loop -----------------------------------------------------------------------

    def _poll(self, wait: float) -> None:
        consumer = self._consumer
        assert consumer is not None
        self._take_all(consumer.consume(FETCH_MAX, wait))
        with self._lock:
            self._schedule()
            assigned, self._assigned_since_poll = self._assigned_since_poll, []
            pause, resume = self._backpressure()
        if assigned:
            # First the pause a partition kept through a rebalance, then this poll's pauses.
            consumer.resume(assigned)
        self._pause(consumer, pause)
        if resume:
            consumer.resume(resume)
        if time.monotonic() >= self._next_commit:
            self._commit(self._owned())
            self._next_commit = time.monotonic() + COMMIT_INTERVAL

    def _take_all(self, messages: list[Message]) -> None:
        """Wraps fetched messages and queues them on their partitions' lanes.

        The hot path of the runner: per message only a wrapper is made (no copying of
        headers, no validation); lanes take their messages a run at a time.
        """
        runs: dict[TopicPartitionKey, list[Inbound[Any]]] = {}
        specs, wrap = self._specs, Inbound.of_message
        run: list[Inbound[Any]] = []
        last_topic, last_partition = None, None
        for message in messages:
            if message.error() is not None:
                self._on_client_event(message)
                continue
            topic, partition = message.topic(), message.partition()
            if partition != last_partition or topic != last_topic:
                # A fetch returns runs of one partition: one look-up per run, not per message.
                last_topic, last_partition = topic, partition
                run = runs.setdefault((topic, partition), [])  # type: ignore[arg-type]
            run.append(wrap(message, topic, partition, specs[topic]))  # type: ignore[arg-type,index]
        if not runs:
            return
        with self._lock:
            for position, run in runs.items():
                # The client delivers only partitions assigned to this member.
                lane = self._lanes.get(position) or self._new_lane(position)
                lane.take_all(run)

    def _schedule(self) -> None:
        """Hands every lane that can start a batch to the workers (lock held)."""
        if self._stop.is_set():
            return
        for lane in self._lanes.values():
            if lane.ready:
                lane.scheduled = True
                self._ready.put(lane)

    def _backpressure(self) -> tuple[list[TopicPartition], list[TopicPartition]]:
        """Returns the partitions to pause (buffer full) and to resume (half empty)."""
        limit = self._settings.consumer_buffer_size
        pause, resume = [], []
        for lane in self._lanes.values():
            if not lane.owned:
                continue
            if not lane.paused and len(lane.queue) >= limit:
                lane.paused = True
                pause.append(TopicPartition(lane.topic, lane.partition))
            elif lane.paused and len(lane.queue) <= limit // 2:
                lane.paused = False
                resume.append(TopicPartition(lane.topic, lane.partition))
        return pause, resume

    def _pause(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not partitions:
            return
        try:
            consumer.pause(partitions)
        except KafkaException as error:
            # A partition revoked meanwhile; the next rebalance settles the rest.
            log.warning("could not pause partitions: %s", error, extra={"group": self.group_id})

    def _on_client_event(self, message: Message) -> None:
        """Handles a message that carries a client event (end of partition, error), not data."""
        error = message.error()
        assert error is not None
        if error.code() == KafkaError._PARTITION_EOF:
            CONSUMER_LAG.labels(self.group_id, message.topic(), str(message.partition())).set(0)
            return
        if error.fatal():
            raise KafkaException(error)
        log.warning("consumer error: %s", error.str(), extra={"group": self.group_id})

    def _owned(self) -> list[Lane]:
        with self._lock:
            return [lane for lane in self._lanes.values() if lane.owned]

    def _in_flight(self) -> bool:
        """Tells whether any lane has messages queued, in hand, or finished uncommitted."""
        with self._lock:
            return any(lane.queue or lane.busy or lane.passed for lane in self._lanes.values())

    def _owned_busy(self) -> bool:
        with self._lock:
            return any(lane.busy for lane in self._lanes.values() if lane.owned)

    # -- the workers -------------------------------------------------------------------------

    def _work(self) -> None:
        while (lane := self._ready.get()) is not None:
            batch = self._start(lane)
            if not batch:
                continue
            try:
                self._processor.process(lane, batch, partial(self._finished, lane))
            except Abandoned:
                log.info(
                    "batch abandoned uncommitted",
                    extra={
                        "group": self.group_id,
                        "topic": lane.topic,
                        "partition": lane.partition,
                    },
                )
            except BaseException as error:  # noqa: BLE001 - the poll loop raises it
                self._fail(error)
            finally:
                self._end(lane)

    def _start(self, lane: Lane) -> list[Inbound[Any]]:
        with self._lock:
            lane.scheduled = False
            if self._stop.is_set() or not lane.owned or lane.closed or lane.busy:
                return []
            lane.handler_thread = threading.current_thread()
            return lane.start_batch(self._batch_size)

    def _finished(self, lane: Lane, records: Sequence[Record]) -> None:
        with self._lock:
            if not lane.closed:
                lane.finish(records)

    def _end(self, lane: Lane) -> None:
        with self._lock:
            lane.in_hand = None
            lane.handler_thread = None
            lane.retrying_since = None
            if lane in self._orphans:
                self._orphans.remove(lane)
            self._schedule()
            self._lock.notify_all()

    def _fail(self, error: BaseException) -> None:
        if self._fatal is None:
            self._fatal = error
        self._stop.set()

    # -- lanes and rebalances ----------------------------------------------------------------

    def _new_lane(self, position: TopicPartitionKey) -> Lane:
        """Opens a lane (lock held); it waits for an older lane's batch of the partition."""
        older = next((lane for lane in self._orphans if lane.position == position), None)
        lane = Lane(position[0], position[1], after=older)
        self._lanes[position] = lane
        return lane

    def _close_lane(self, lane: Lane) -> None:
        """The partition is another member's now: nothing of the lane is committed (lock held)."""
        lane.closed = True
        self._lanes.pop(lane.position, None)
        if lane.busy:
            self._orphans.append(lane)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assigned = {(p.topic, p.partition) for p in partitions}
        with self._lock:
            for lane in list(self._lanes.values()):
                if not lane.owned and lane.position not in assigned:
                    self._close_lane(lane)
            for position in assigned:
                lane = self._lanes.get(position) or self._new_lane(position)
                # Given straight back: the lane carries on; what the client fetches again
                # from the committed offset is recognised and not taken twice.
                lane.owned = True
                lane.paused = False
            # librdkafka keeps a partition paused across a rebalance that revokes and assigns
            # it again, while its lane starts unpaused: the poll loop resumes it.
            self._assigned_since_poll.extend(partitions)
        self.joined.set()
        log.info(
            "partitions assigned",
            extra={"group": self.group_id, "partitions": _describe_partitions(partitions)},
        )
        if self._user_on_assign is not None:
            self._user_on_assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Lets the revoked partitions' batches finish (up to a bound), commits them."""
        with self._lock:
            lanes = [self._lanes[key] for key in _keys(partitions) if key in self._lanes]
            for lane in lanes:
                lane.owned = False
                lane.paused = False
            self._wait_idle(lanes, self._settings.consumer_drain_timeout)
        self._commit(lanes)
        self._revoked(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The group moved on without this member: nothing in hand may be committed."""
        with self._lock:
            for key in _keys(partitions):
                lane = self._lanes.get(key)
                if lane is not None:
                    self._close_lane(lane)
        self._revoked(partitions)

    def _revoked(self, partitions: list[TopicPartition]) -> None:
        for topic, partition in _keys(partitions):
            _forget_lag(self.group_id, topic, partition)
        log.info(
            "partitions revoked",
            extra={"group": self.group_id, "partitions": _describe_partitions(partitions)},
        )
        if self._user_on_revoke is not None:
            self._user_on_revoke(partitions)

    def _wait_idle(self, lanes: list[Lane], timeout: float) -> None:
        """Waits (lock held) until the lanes' batches ended, or the timeout passed."""
        deadline = time.monotonic() + timeout
        me = threading.current_thread()
        # A handler that itself triggers a revoke cannot wait for itself.
        while busy := [lane for lane in lanes if lane.busy and lane.handler_thread is not me]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning(
                    "abandoning the batches in hand of %s after %.0fs; the next owner redoes them",
                    [f"{lane.topic}[{lane.partition}]" for lane in busy],
                    timeout,
                    extra={"group": self.group_id},
                )
                return
            self._lock.wait(remaining)

    # -- commits -----------------------------------------------------------------------------

    def _commit(self, lanes: list[Lane]) -> None:
        """Commits each lane's contiguous run of finished messages."""
        with self._lock:
            offsets = {lane: lane.committable() for lane in lanes if not lane.closed}
        positions = {lane: offset for lane, offset in offsets.items() if offset is not None}
        consumer = self._consumer
        if not positions or consumer is None:
            return
        try:
            consumer.commit(
                offsets=[
                    TopicPartition(lane.topic, lane.partition, o) for lane, o in positions.items()
                ],
                asynchronous=False,
            )
        except KafkaException as error:
            # The group moved on (rebalance); the new owner will see these messages again.
            log.warning("commit failed, messages will be redelivered: %s", error)
            return
        with self._lock:
            for lane, offset in positions.items():
                count = lane.committed_at(offset)
                MESSAGES_PROCESSED.labels(self.group_id, lane.topic).inc(count)
        for lane, offset in positions.items():
            self._record_lag(consumer, lane.topic, lane.partition, offset)

    def _record_lag(self, consumer: Consumer, topic: str, partition: int, position: int) -> None:
        # cached=True reads the high watermark from the last fetch response: no extra request,
        # and correct on the embedded broker, whose ListOffsets answers are not.
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
        if high >= 0:
            CONSUMER_LAG.labels(self.group_id, topic, str(partition)).set(max(0, high - position))


def _keys(partitions: list[TopicPartition]) -> list[TopicPartitionKey]:
    return [(p.topic, p.partition) for p in partitions]


def _describe_partitions(partitions: list[TopicPartition]) -> list[str]:
    return [f"{p.topic}[{p.partition}]" for p in partitions]


def _forget_lag(group: str, topic: str, partition: int) -> None:
    with contextlib.suppress(KeyError):
        CONSUMER_LAG.remove(group, topic, str(partition))
