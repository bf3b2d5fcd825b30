"""What a consumer handler receives, and how it says a message can never be processed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from confluent_kafka import Message, TopicPartition
from pydantic import BaseModel

from rbr_runtime.kafka.codec import UndecodableMessage, decode
from rbr_schemas import CloudEvent, TopicSpec

DataT = TypeVar("DataT", bound=BaseModel)
Headers = list[tuple[str, bytes]]
TopicPartitionKey = tuple[str, int]


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
