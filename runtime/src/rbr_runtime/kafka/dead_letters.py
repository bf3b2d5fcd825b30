"""Inspecting dead-letter topics and sending their messages back for another try.

Replaying re-produces each dead letter to its source topic with its original key, value and
headers (the `rbr-dlq-*` headers removed), so every consumer group of that topic sees it
again; consumers are idempotent, so that is safe. Progress is kept as the committed offsets of
a replay consumer group on the DLQ topic: a second replay only sends what arrived since.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from pydantic import ValidationError

from rbr_runtime.kafka.config import client_config
from rbr_runtime.kafka.consumer import Record
from rbr_runtime.kafka.producer import EventProducer, OutgoingMessage
from rbr_runtime.settings import CommonSettings
from rbr_schemas import DeadLetterHeaders, is_dlq_header
from rbr_schemas.dlq import DLQ_SUFFIX

log = logging.getLogger(__name__)

REPLAY_GROUP = "rbr-dlq-replay"
READ_TIMEOUT = 30.0


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message and why it was given up on (None: headers unreadable)."""

    record: Record
    reason: DeadLetterHeaders | None

    @property
    def source_topic(self) -> str:
        """Returns the topic the message came from."""
        if self.reason is not None:
            return self.reason.source_topic
        return self.record.topic.removesuffix(DLQ_SUFFIX)


@dataclass
class ReplayReport:
    """What a replay did."""

    replayed: int = 0
    skipped: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)


def _dead_letter(message: Message) -> DeadLetter:
    record = Record.from_message(message)
    try:
        reason: DeadLetterHeaders | None = DeadLetterHeaders.from_kafka(record.headers)
    except ValidationError:
        reason = None
    return DeadLetter(record, reason)


def _read_to_end(consumer: Consumer, partitions: int) -> Iterator[Message]:
    """Yields messages until every assigned partition reported its end.

    Raises:
        TimeoutError: no progress for READ_TIMEOUT seconds (broker unreachable).
    """
    at_end: set[int] = set()
    deadline = time.monotonic() + READ_TIMEOUT
    while len(at_end) < partitions:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer from the broker for {READ_TIMEOUT:.0f}s")
        for message in consumer.consume(500, 0.5):
            deadline = time.monotonic() + READ_TIMEOUT
            error = message.error()
            if error is None:
                at_end.discard(message.partition() or 0)
                yield message
            elif error.code() == KafkaError._PARTITION_EOF:
                at_end.add(message.partition() or 0)
            else:
                log.warning("while reading dead letters: %s", error.str())


def _consumer(settings: CommonSettings, group: str) -> Consumer:
    return Consumer(
        {
            **client_config(settings),
            "group.id": group,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    # Asking about one topic by name can auto-create it; list them all instead.
    metadata = consumer.list_topics(timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise LookupError(f"topic {topic!r} does not exist")
    return sorted(metadata.partitions)


def read_dead_letters(settings: CommonSettings, dlq_topic: str) -> list[DeadLetter]:
    """Returns every message on a dead-letter topic, oldest first per partition.

    Raises:
        LookupError: the topic does not exist.
    """
    consumer = _consumer(settings, f"{REPLAY_GROUP}-reader")
    try:
        partitions = _partitions(consumer, dlq_topic)
        consumer.assign([TopicPartition(dlq_topic, p, OFFSET_BEGINNING) for p in partitions])
        return [_dead_letter(message) for message in _read_to_end(consumer, len(partitions))]
    finally:
        consumer.close()


def replay_dead_letters(
    settings: CommonSettings,
    dlq_topic: str,
    *,
    error_class: str | None = None,
    from_beginning: bool = False,
    dry_run: bool = False,
    progress: Callable[[DeadLetter, bool], None] | None = None,
) -> ReplayReport:
    """Re-produces dead letters to their source topics and records the progress.

    Args:
        settings: where the broker is.
        dlq_topic: the dead-letter topic, e.g. `logs.extracted.dlq`.
        error_class: replay only dead letters with this reason (others are skipped and, past
            this replay, only seen again with from_beginning).
        from_beginning: start from the first dead letter instead of where the last replay
            stopped.
        dry_run: report what would be replayed; send and record nothing.
        progress: called for each dead letter with whether it is (or would be) replayed.

    Raises:
        LookupError: the topic does not exist.
        DeliveryError: the broker did not confirm a re-produced message; nothing after the
            last confirmed batch is recorded as replayed.
    """
    consumer = _consumer(settings, REPLAY_GROUP)
    producer = None if dry_run else EventProducer(settings, source="/rbr/cli")
    report = ReplayReport()
    try:
        partitions = _partitions(consumer, dlq_topic)
        start = {} if from_beginning else _committed(consumer, dlq_topic, partitions)
        consumer.assign(
            [TopicPartition(dlq_topic, p, start.get(p, OFFSET_BEGINNING)) for p in partitions]
        )
        for message in _read_to_end(consumer, len(partitions)):
            letter = _dead_letter(message)
            wanted = error_class is None or (
                letter.reason is not None and letter.reason.error_class == error_class
            )
            if progress is not None:
                progress(letter, wanted)
            _count(report, letter, wanted)
            if producer is None:
                continue
            if wanted:
                producer.send_messages([_back_to_source(letter)])
            # Recorded only once the re-produced message is confirmed: a crash resends at most
            # the one in flight.
            position = TopicPartition(dlq_topic, letter.record.partition, letter.record.offset + 1)
            consumer.commit(offsets=[position], asynchronous=False)
        return report
    finally:
        consumer.close()
        if producer is not None:
            producer.flush()


def _count(report: ReplayReport, letter: DeadLetter, wanted: bool) -> None:
    if not wanted:
        report.skipped += 1
        return
    report.replayed += 1
    report.by_topic[letter.source_topic] = report.by_topic.get(letter.source_topic, 0) + 1


def _committed(consumer: Consumer, topic: str, partitions: list[int]) -> dict[int, int]:
    committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    return {tp.partition: tp.offset for tp in committed if tp.offset >= 0}


def _back_to_source(letter: DeadLetter) -> OutgoingMessage:
    headers = [(name, value) for name, value in letter.record.headers if not is_dlq_header(name)]
    return OutgoingMessage(letter.source_topic, letter.record.key, letter.record.value, headers)
