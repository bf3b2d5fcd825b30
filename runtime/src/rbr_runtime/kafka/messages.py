"""What a consumer handler receives, and how it says a message can never be processed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from confluent_kafka import Message, TopicPartition
from pydantic import BaseModel

from rbr_runtime.kafka.codec import UndecodableMessage, decode
from rbr_schemas import CloudEvent, TopicSpec

DataT = TypeVar("DataT", bound=BaseModel)
Headers = list[tuple[str, bytes]]
TopicPartitionKey = tuple[str, int]


class Record:
    """Where a message was and what it held, byte for byte.

    Read from the broker, only its place is copied out of the client's message at once; key,
    value, headers and timestamp are read from it when asked for: the consumer's hot path
    makes one record per message, and a handler may need none of them.
    """

    __slots__ = ("_message", "_stored", "offset", "partition", "topic")

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: Headers | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self._message: Message | None = None
        # Key, value, headers and timestamp of a record not read from the broker.
        self._stored = (key, value, [] if headers is None else headers, timestamp_ms)

    def _wrap(self, message: Message, topic: str, partition: int) -> None:
        # Only what every message needs; `_stored` stays unset, as `_message` stands for it.
        self.topic = topic
        self.partition = partition
        self.offset = message.offset()  # type: ignore[assignment]  # a data message has one
        self._message = message

    @classmethod
    def from_message(cls, message: Message) -> Record:
        """Wraps a librdkafka message (one without an error)."""
        topic, partition = message.topic(), message.partition()
        if topic is None or partition is None or message.offset() is None:
            raise ValueError("a data message always has a topic, partition and offset")
        record = cls.__new__(cls)
        record._wrap(message, topic, partition)
        return record

    @property
    def key(self) -> bytes | None:
        """Returns the key."""
        message = self._message
        return self._stored[0] if message is None else _as_bytes(message.key())

    @property
    def value(self) -> bytes | None:
        """Returns the value (None: a null value, a tombstone)."""
        message = self._message
        return self._stored[1] if message is None else _as_bytes(message.value())

    @property
    def headers(self) -> Headers:
        """Returns the headers as (name, bytes) pairs."""
        message = self._message
        return self._stored[2] if message is None else message_headers(message)

    @property
    def timestamp_ms(self) -> int | None:
        """Returns the message's timestamp in milliseconds (None: the broker gave none)."""
        message = self._message
        if message is None:
            return self._stored[3]
        _, timestamp = message.timestamp()
        return timestamp if timestamp > 0 else None

    @property
    def position(self) -> TopicPartitionKey:
        """Returns (topic, partition)."""
        return (self.topic, self.partition)

    @property
    def key_text(self) -> str | None:
        """Returns the key decoded as UTF-8 (bucket name or dedupe key)."""
        return None if self.key is None else self.key.decode("utf-8", "replace")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return (self.topic, self.partition, self.offset, self.key, self.value) == (
            other.topic,
            other.partition,
            other.offset,
            other.key,
            other.value,
        )

    def __hash__(self) -> int:
        return hash((self.topic, self.partition, self.offset))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.topic}[{self.partition}]@{self.offset})"


_UNREAD = object()
"""An event not read (so not validated) yet."""


class Inbound(Record, Generic[DataT]):
    """A consumed message and its event, validated when first read.

    The event is decoded on first access of `event` or `data`, not before: a message the
    handler never reads costs no validation. Reading an invalid one raises
    `UndecodableMessage` naming the message; the runner then dead-letters it and hands the
    handler the rest of its batch again. `event` is None for a tombstone.
    """

    __slots__ = ("_outcome", "_spec")

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: Headers | None = None,
        timestamp_ms: int | None = None,
        event: CloudEvent[Any] | None = None,
    ) -> None:
        super().__init__(
            topic, partition, offset, key, value, headers=headers, timestamp_ms=timestamp_ms
        )
        self._spec: TopicSpec | None = None
        # The event, None (a tombstone), the UndecodableMessage, or _UNREAD.
        self._outcome: object = event

    @classmethod
    def of_message(
        cls, message: Message, topic: str, partition: int, spec: TopicSpec
    ) -> Inbound[Any]:
        """Wraps a librdkafka data message of the topic; its event is validated when read."""
        inbound: Inbound[Any] = cls.__new__(cls)
        inbound._wrap(message, topic, partition)
        inbound._spec = spec
        inbound._outcome = _UNREAD
        return inbound

    @property
    def is_tombstone(self) -> bool:
        """Tells whether the message is a null value (a removal on a compacted topic).

        Raises:
            UndecodableMessage: a null value on a topic that carries no tombstones.
        """
        if self.value is not None:
            return False
        if self._spec is not None and not self._spec.tombstones:
            self.event  # noqa: B018 - raises the decoding error, naming this message
        return True

    @property
    def event(self) -> CloudEvent[Any] | None:
        """Returns the validated event (None for a tombstone).

        Raises:
            UndecodableMessage: the message is not a valid event of its topic; the error's
                `message` is this one.
        """
        outcome = self._outcome
        if outcome is _UNREAD:
            outcome = self._outcome = self._decode()
        if isinstance(outcome, UndecodableMessage):
            raise outcome
        return outcome  # type: ignore[return-value]

    def _decode(self) -> CloudEvent[Any] | UndecodableMessage | None:
        assert self._spec is not None
        try:
            return decode_value(self._spec, self.value)
        except UndecodableMessage as error:
            error.message = self
            return error

    @property
    def data(self) -> DataT:
        """Returns the event data.

        Raises:
            UndecodableMessage: the message is not a valid event of its topic.
            ValueError: the message is a tombstone and has no data.
        """
        event = self.event
        if event is None:
            raise ValueError(f"{self.topic}@{self.offset} is a tombstone and has no data")
        data: DataT = event.data
        return data


class PermanentError(Exception):
    """Raised by a handler for a message that can never be processed: dead-letter it.

    The text becomes the DLQ's error header, so it must not contain secrets.

    Args:
        reason: why, for the DLQ header and the log.
        counts_toward_cap: False when the cause is outside this system (e.g. a notification
            channel that refuses every delivery): such dead letters do not stop the consumer
            through RBR_DLQ_MAX_CONSECUTIVE, which is there to catch our own systematic faults
            (a bad deploy, a schema mismatch), and stopping would starve every other message.
        message: the message of the batch that is rejected. The messages before it in the
            batch count as done and those after it as not handled yet (they are handed to the
            handler again, without it). Without it, the runner cannot tell which message is
            at fault and re-runs the batch message by message to find out.
    """

    def __init__(
        self, reason: str, *, counts_toward_cap: bool = True, message: Record | None = None
    ) -> None:
        super().__init__(reason)
        self.counts_toward_cap = counts_toward_cap
        self.message = message


@dataclass(frozen=True)
class Rejection:
    """A handler's verdict that one message of its batch can never be processed.

    A handler returns these for the messages it rejects after handling the others of its
    batch: the rejected ones are dead-lettered, the others count as done, nothing is re-run.
    """

    message: Record
    reason: str
    counts_toward_cap: bool = True


class DeadLetterCapExceeded(RuntimeError):
    """Too many consecutive dead letters: the consumer stops instead of dumping everything."""


Handler = Callable[[Sequence[Inbound[Any]]], Sequence[Rejection] | None]
"""Handles a batch of one partition's messages, in offset order; returns once every side
effect is durable, with the messages it rejected (None: none)."""
PartitionCallback = Callable[[list[TopicPartition]], None]


def _as_bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def message_headers(message: Message) -> Headers:
    """Returns a message's headers as (name, bytes) pairs (a null header becomes b"")."""
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(name, _as_bytes(value) or b"") for name, value in pairs]


def decode_value(spec: TopicSpec, value: bytes | None) -> CloudEvent[Any] | None:
    """Validates a message value as an event of the topic (None: a tombstone).

    Raises:
        UndecodableMessage: the value is not a valid event of the topic.
    """
    if value is None:
        if not spec.tombstones:
            raise UndecodableMessage(f"null value on {spec.name}, which carries no tombstones")
        return None
    return decode(spec, value)


def decode_record(record: Record, spec: TopicSpec) -> Inbound[Any]:
    """Validates a record as an event of its topic, now.

    Raises:
        UndecodableMessage: the record is not a valid event of the topic.
    """
    event = decode_value(spec, record.value)
    return Inbound(
        record.topic,
        record.partition,
        record.offset,
        record.key,
        record.value,
        headers=record.headers,
        timestamp_ms=record.timestamp_ms,
        event=event,
    )
