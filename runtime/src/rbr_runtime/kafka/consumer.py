"""The consumer runner: at-least-once delivery of validated events to plain handler functions.

A handler is a function that takes a batch of `Inbound` events and returns once every side
effect is durable. The runner owns everything else:

* offsets are committed only after the handler returned for the whole batch;
* a handler that raises `PermanentError` rejects a message: the batch is re-run message by
  message to find which, and that one goes to `<topic>.dlq` with headers saying why;
* a message that is not a valid event of its topic goes to the DLQ without reaching the
  handler;
* an outage (an exception `rbr_runtime.errors.is_outage` recognises: database, S3, broker,
  network, or `TransientError`) is retried with exponential backoff, forever, never committed
  and never skipped; the consumer keeps its group membership meanwhile;
* any other exception is a bug or a message the code cannot handle: retried
  RBR_UNEXPECTED_ERROR_RETRIES times, then the message is dead-lettered (`handler_error`)
  so it cannot block its partition forever;
* more than `dlq_max_consecutive` dead letters in a row stop the consumer
  (`DeadLetterCapExceeded`): something is systematically wrong;
* `stop()` lets the batch in hand finish and commit, then leaves the group;
* `on_commit`, if given, hears which messages were committed (e.g. to forget a "done, not
  committed yet" marker); what it raises is logged, never undoes the commit.

Handlers must be idempotent: a batch may be delivered again after a crash or a rebalance.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel

from rbr_runtime.errors import is_outage
from rbr_runtime.jsonlog import log_context
from rbr_runtime.kafka.codec import UndecodableMessage, decode
from rbr_runtime.kafka.config import consumer_config
from rbr_runtime.kafka.producer import EventProducer, OutgoingMessage
from rbr_runtime.settings import CommonSettings
from rbr_schemas import CloudEvent, DeadLetterHeaders, TopicSpec, is_dlq_header, utcnow

log = logging.getLogger(__name__)

DataT = TypeVar("DataT", bound=BaseModel)
Headers = list[tuple[str, bytes]]
TopicPartitionKey = tuple[str, int]

MESSAGES_PROCESSED = Counter(
    "rbr_messages_processed_total", "Messages handled and committed.", ["group", "topic"]
)
MESSAGES_DEAD_LETTERED = Counter(
    "rbr_dlq_messages_total", "Messages sent to a dead-letter topic.", ["group", "topic", "reason"]
)
HANDLER_RETRIES = Counter(
    "rbr_handler_retries_total", "Batches retried after a transient failure.", ["group"]
)
CONSUMER_LAG = Gauge(
    "rbr_consumer_lag", "Messages behind the end of the partition.", ["group", "topic", "partition"]
)
BATCH_SECONDS = Histogram("rbr_batch_seconds", "Time to handle and commit one batch.", ["group"])


class PermanentError(Exception):
    """Raised by a handler for a message that can never be processed: dead-letter it.

    The text becomes the DLQ's error header, so it must not contain secrets.

    Args:
        reason: why, for the DLQ header and the log.
        counts_toward_cap: False when the cause is outside this system (e.g. a notification
            channel that refuses every delivery): such dead letters do not stop the consumer
            through RBR_DLQ_MAX_CONSECUTIVE, which is there to catch our own systematic faults
            (a bad deploy, a schema mismatch), and stopping would starve every other message.
    """

    def __init__(self, reason: str, *, counts_toward_cap: bool = True) -> None:
        super().__init__(reason)
        self.counts_toward_cap = counts_toward_cap


class DeadLetterCapExceeded(RuntimeError):
    """Too many consecutive dead letters: the consumer stops instead of dumping everything."""


class _HandlerFault(PermanentError):
    """A handler kept failing with an exception that is not an outage (a bug, a poison)."""


class _Abandoned(Exception):
    """The batch in hand must not be committed: the consumer is stopping or lost it."""


@dataclass(frozen=True)
class Record:
    """Where a message was and what it held, byte for byte."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)
    timestamp_ms: int | None = None

    @property
    def position(self) -> TopicPartitionKey:
        """Returns (topic, partition)."""
        return (self.topic, self.partition)

    @property
    def key_text(self) -> str | None:
        """Returns the key decoded as UTF-8 (bucket name or dedupe key)."""
        return None if self.key is None else self.key.decode("utf-8", "replace")

    @classmethod
    def from_message(cls, message: Message) -> Record:
        """Copies what matters out of a librdkafka message (one without an error)."""
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            raise ValueError("a data message always has a topic, partition and offset")
        _, timestamp = message.timestamp()
        return cls(
            topic=topic,
            partition=partition,
            offset=offset,
            key=_as_bytes(message.key()),
            value=_as_bytes(message.value()),
            headers=message_headers(message),
            timestamp_ms=timestamp if timestamp > 0 else None,
        )


@dataclass(frozen=True)
class Inbound(Record, Generic[DataT]):
    """A consumed message with its validated event; `event` is None for a tombstone."""

    event: CloudEvent[Any] | None = None

    @property
    def is_tombstone(self) -> bool:
        """Tells whether the message is a null value (a removal on a compacted topic)."""
        return self.value is None

    @property
    def data(self) -> DataT:
        """Returns the event data.

        Raises:
            ValueError: the message is a tombstone and has no data.
        """
        if self.event is None:
            raise ValueError(f"{self.topic}@{self.offset} is a tombstone and has no data")
        data: DataT = self.event.data
        return data


Handler = Callable[[Sequence[Inbound[Any]]], None]
CommitCallback = Callable[[Sequence[Inbound[Any]]], None]


def _as_bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def message_headers(message: Message) -> Headers:
    """Returns a message's headers as (name, bytes) pairs (a null header becomes b"")."""
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(name, _as_bytes(value) or b"") for name, value in pairs]


PartitionCallback = Callable[[list[TopicPartition]], None]


def decode_record(record: Record, spec: TopicSpec) -> Inbound[Any]:
    """Validates a record as an event of its topic.

    Raises:
        UndecodableMessage: the record is not a valid event of the topic.
    """
    if record.value is None:
        if not spec.tombstones:
            raise UndecodableMessage(f"null value on {spec.name}, which carries no tombstones")
        return Inbound(**vars(record))
    return Inbound(**vars(record), event=decode(spec, record.value))


def dead_letter_message(
    record: Record, dlq_topic: str, *, group: str, reason: str, error: str
) -> OutgoingMessage:
    """Returns the dead letter of a record: its key, value and headers, and why (`rbr-dlq-*`).

    Args:
        record: the message given up on.
        dlq_topic: its topic's dead-letter topic.
        group: the consumer group that gave up on it.
        reason: a reason code (`rejected`, `undecodable`, `handler_error`).
        error: what went wrong, free of secrets (cut to 2,000 characters).
    """
    dlq_headers = DeadLetterHeaders(
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        consumer_group=group,
        error_class=reason,
        error=error[:2000],
        failed_at=utcnow(),
    )
    headers = [h for h in record.headers if not is_dlq_header(h[0])] + dlq_headers.to_kafka()
    return OutgoingMessage(dlq_topic, record.key, record.value, headers)


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Returns the jittered exponential delay before retry number `attempt` (from 1)."""
    base = min(maximum, initial * 2.0 ** min(attempt - 1, 30))
    return float(base * random.uniform(0.8, 1.2))


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
        on_commit: CommitCallback | None = None,
    ) -> None:
        self.group_id = group_id
        self._settings = settings
        self._specs = {spec.name: spec for spec in topics}
        self._handler = handler
        self._producer = producer
        self._batch_size = batch_size or settings.consumer_batch_size
        self._user_on_assign = on_assign
        self._user_on_revoke = on_revoke
        self._on_commit = on_commit
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._assigned: set[TopicPartitionKey] = set()
        self._revoked_during_batch: set[TopicPartitionKey] = set()
        self._consecutive_dead_letters = 0
        self.joined = threading.Event()
        self.retrying_since: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Asks the runner to finish the batch in hand, commit and leave the group."""
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
            on_lost=self._on_revoke,
        )
        log.info("consumer started", extra={"group": self.group_id, "topics": list(self._specs)})
        try:
            while not self._stop.is_set():
                self._revoked_during_batch.clear()
                messages = self._consumer.consume(
                    self._batch_size, self._settings.consumer_batch_wait
                )
                self._process(messages)
        finally:
            self._close()

    def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()
        log.info("consumer stopped", extra={"group": self.group_id})

    # -- rebalance callbacks -------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned |= {(p.topic, p.partition) for p in partitions}
        self.joined.set()
        log.info(
            "partitions assigned",
            extra={"group": self.group_id, "partitions": _describe_partitions(partitions)},
        )
        if self._user_on_assign is not None:
            self._user_on_assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in partitions}
        self._assigned -= revoked
        self._revoked_during_batch |= revoked
        for topic, partition in revoked:
            _forget_lag(self.group_id, topic, partition)
        log.info(
            "partitions revoked",
            extra={"group": self.group_id, "partitions": _describe_partitions(partitions)},
        )
        if self._user_on_revoke is not None:
            self._user_on_revoke(partitions)

    # -- the batch ---------------------------------------------------------------------------

    def _process(self, messages: list[Message]) -> None:
        records = [Record.from_message(m) for m in messages if not self._is_event(m)]
        if not records:
            return
        started = time.monotonic()
        inbound: list[Inbound[Any]] = []
        try:
            inbound = self._decode_or_dead_letter(records)
            if inbound:
                self._handle(inbound)
        except _Abandoned:
            log.info("batch abandoned uncommitted", extra={"group": self.group_id})
            return
        finally:
            self._rewind_reassigned(records)
        committed = self._commit(records)
        BATCH_SECONDS.labels(self.group_id).observe(time.monotonic() - started)
        self._committed([m for m in inbound if m.position in committed])

    def _committed(self, messages: Sequence[Inbound[Any]]) -> None:
        """Tells on_commit which messages were committed (its failures are only logged)."""
        if self._on_commit is None or not messages:
            return
        try:
            self._on_commit(messages)
        except Exception as error:  # noqa: BLE001 - the commit stands whatever the hook does
            log.warning(
                "after-commit hook failed: %s: %s",
                type(error).__name__,
                str(error)[:500],
                extra={"group": self.group_id},
            )

    def _rewind_reassigned(self, records: Sequence[Record]) -> None:
        """Fetches again what was dropped from partitions revoked and assigned back meanwhile.

        Records of a partition revoked while the batch was in hand are dropped uncommitted
        (the new owner redoes them). When the partition came back to this member in the same
        rebalance, librdkafka's fetch position may already be past those records, so the next
        commit would skip them: rewind to the batch's first record of the partition instead.
        """
        firsts: dict[TopicPartitionKey, int] = {}
        for record in records:
            if record.position in self._revoked_during_batch and record.position in self._assigned:
                firsts[record.position] = min(
                    firsts.get(record.position, record.offset), record.offset
                )
        consumer = self._consumer
        if consumer is None:
            return
        for (topic, partition), offset in firsts.items():
            try:
                consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as error:
                # The partition is not fetchable yet: it restarts from the committed offset,
                # which is not past these records either.
                log.warning("could not rewind %s[%d]: %s", topic, partition, error)

    def _is_event(self, message: Message) -> bool:
        """Handles a message that carries a client event rather than data; True if it did."""
        error = message.error()
        if error is None:
            return False
        if error.code() == KafkaError._PARTITION_EOF:
            CONSUMER_LAG.labels(self.group_id, message.topic(), str(message.partition())).set(0)
            return True
        if error.fatal():
            raise KafkaException(error)
        log.warning("consumer error: %s", error.str(), extra={"group": self.group_id})
        return True

    def _decode_or_dead_letter(self, records: list[Record]) -> list[Inbound[Any]]:
        inbound = []
        for record in records:
            try:
                inbound.append(decode_record(record, self._specs[record.topic]))
            except UndecodableMessage as error:
                self._dead_letter(record, "undecodable", str(error))
        return inbound

    def _handle(self, batch: Sequence[Inbound[Any]]) -> None:
        rejection = self._retry(batch, self._call_handler)
        if rejection is None:
            self._consecutive_dead_letters = 0
            return
        if len(batch) > 1:
            # Some message in the batch is poison; find which by handling them one by one.
            for message in batch:
                self._handle([message])
            return
        reason = "handler_error" if isinstance(rejection, _HandlerFault) else "rejected"
        self._dead_letter(batch[0], reason, str(rejection), counts=rejection.counts_toward_cap)

    def _call_handler(self, batch: Sequence[Inbound[Any]]) -> PermanentError | None:
        first = batch[0]
        context: dict[str, object] = {"topic": first.topic, "group": self.group_id}
        if len(batch) == 1:
            context |= {"bucket": first.key_text, "event_id": first.event and first.event.id}
        with log_context(**context):
            try:
                self._handler(batch)
            except PermanentError as rejection:
                return rejection
        return None

    def _retry(
        self,
        batch: Sequence[Record],
        action: Callable[[Any], PermanentError | None],
        *,
        bounded: bool = True,
    ) -> PermanentError | None:
        """Runs action(batch) until it stops raising; each failure backs off and retries.

        Outages are retried for as long as they last. With `bounded`, other exceptions (a bug
        or a message the code cannot handle) are retried RBR_UNEXPECTED_ERROR_RETRIES times,
        then returned as a rejection so the message is dead-lettered instead of blocking its
        partition forever.
        """
        attempt = faults = 0
        while True:
            batch = [
                record for record in batch if record.position not in self._revoked_during_batch
            ]
            if not batch or (self._stop.is_set() and attempt > 0):
                raise _Abandoned
            try:
                outcome = action(batch)
            except Exception as error:  # noqa: BLE001 - classified below
                attempt += 1
                fault = bounded and not is_outage(error)
                faults += fault
                if faults > self._settings.unexpected_error_retries:
                    self.retrying_since = None
                    return _HandlerFault(f"{type(error).__name__}: {error}"[:1000])
                self._back_off(attempt, error, fault=fault)
                continue
            self.retrying_since = None
            return outcome

    def _back_off(self, attempt: int, error: Exception, *, fault: bool = False) -> None:
        delay = backoff_delay(
            attempt, self._settings.retry_initial_backoff, self._settings.retry_max_backoff
        )
        if self.retrying_since is None:
            self.retrying_since = time.monotonic()
        HANDLER_RETRIES.labels(self.group_id).inc()
        log.warning(
            "%s, retrying in %.1fs (attempt %d): %s: %s",
            "unexpected error" if fault else "transient failure",
            delay,
            attempt,
            type(error).__name__,
            str(error)[:500],
            extra={"group": self.group_id},
            exc_info=error if fault and attempt == 1 else None,
        )
        self._idle(delay)

    def _idle(self, seconds: float) -> None:
        """Waits while staying in the group: partitions paused, rebalances still served."""
        consumer = self._consumer
        assert consumer is not None
        assignment = consumer.assignment()
        consumer.pause(assignment)
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and (remaining := deadline - time.monotonic()) > 0:
            message = consumer.poll(min(0.2, remaining))
            if message is not None and message.error() is None:
                # A partition assigned during the pause delivered a message; give it back.
                record = Record.from_message(message)
                consumer.seek(TopicPartition(record.topic, record.partition, record.offset))
        consumer.resume(consumer.assignment())

    def _dead_letter(self, record: Record, reason: str, error: str, *, counts: bool = True) -> None:
        self._consecutive_dead_letters += 1 if counts else 0
        if self._consecutive_dead_letters > self._settings.dlq_max_consecutive:
            raise DeadLetterCapExceeded(
                f"{self._consecutive_dead_letters} consecutive messages could not be processed "
                f"(last: {record.topic}[{record.partition}]@{record.offset}: {error[:300]}); "
                "stopping instead of dead-lettering everything. Fix the cause, then restart."
            )
        spec = self._specs[record.topic]
        message = dead_letter_message(
            record, spec.dlq, group=self.group_id, reason=reason, error=error
        )
        self._retry([record], lambda _: self._producer.send_messages([message]), bounded=False)
        MESSAGES_DEAD_LETTERED.labels(self.group_id, record.topic, reason).inc()
        log.error(
            "message dead-lettered to %s: %s",
            spec.dlq,
            error[:500],
            extra={
                "group": self.group_id,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "bucket": record.key_text,
            },
        )

    def _commit(self, records: Sequence[Record]) -> set[TopicPartitionKey]:
        """Commits the offsets after records; returns the partitions committed."""
        next_offsets: dict[TopicPartitionKey, int] = {}
        for record in records:
            next_offsets[record.position] = max(
                next_offsets.get(record.position, 0), record.offset + 1
            )
        owned = {
            position: offset
            for position, offset in next_offsets.items()
            if position not in self._revoked_during_batch
        }
        if not owned:
            return set()
        consumer = self._consumer
        assert consumer is not None
        try:
            consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in owned.items()],
                asynchronous=False,
            )
        except KafkaException as error:
            # The group moved on (rebalance); the new owner will see these messages again.
            log.warning("commit failed, messages will be redelivered: %s", error)
            return set()
        for (topic, partition), offset in owned.items():
            MESSAGES_PROCESSED.labels(self.group_id, topic).inc(
                sum(1 for r in records if r.position == (topic, partition))
            )
            self._record_lag(consumer, topic, partition, offset)
        return set(owned)

    def _record_lag(self, consumer: Consumer, topic: str, partition: int, position: int) -> None:
        # cached=True reads the high watermark from the last fetch response: no extra request,
        # and correct on the embedded broker, whose ListOffsets answers are not.
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
        if high >= 0:
            CONSUMER_LAG.labels(self.group_id, topic, str(partition)).set(max(0, high - position))


def _describe_partitions(partitions: list[TopicPartition]) -> list[str]:
    return [f"{p.topic}[{p.partition}]" for p in partitions]


def _forget_lag(group: str, topic: str, partition: int) -> None:
    with contextlib.suppress(KeyError):
        CONSUMER_LAG.remove(group, topic, str(partition))
