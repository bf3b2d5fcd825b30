"""Handling one partition's batch on a worker thread: decode, call, retry, dead-letter.

Runs off the poll thread, so a handler may take as long as it needs: the consumer keeps
polling (and its group membership) meanwhile. Each message of the batch ends either done or
dead-lettered, reported as it happens so the runner can commit it; a batch abandoned half
way (the runner stops, or the partition went to another member) leaves the rest unfinished,
and the runner never commits past an unfinished message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import Counter, Histogram

from rbr_runtime.errors import is_outage
from rbr_runtime.jsonlog import log_context
from rbr_runtime.kafka.codec import UndecodableMessage
from rbr_runtime.kafka.lanes import Lane
from rbr_runtime.kafka.messages import (
    DeadLetterCapExceeded,
    Handler,
    Inbound,
    PermanentError,
    Record,
    Rejection,
)
from rbr_runtime.kafka.producer import EventProducer, OutgoingMessage
from rbr_runtime.retry import backoff_delay
from rbr_runtime.settings import CommonSettings
from rbr_schemas import DeadLetterHeaders, TopicSpec, is_dlq_header, utcnow

log = logging.getLogger(__name__)

MESSAGES_DEAD_LETTERED = Counter(
    "rbr_dlq_messages_total", "Messages sent to a dead-letter topic.", ["group", "topic", "reason"]
)
HANDLER_RETRIES = Counter(
    "rbr_handler_retries_total", "Batches retried after a transient failure.", ["group"]
)
BATCH_SECONDS = Histogram("rbr_batch_seconds", "Time to handle one batch.", ["group"])

Finished = Callable[[list[Record]], None]
"""Reports messages done or dead-lettered."""


class Abandoned(Exception):
    """The batch in hand must not be finished: the consumer is stopping or lost the partition."""


class _HandlerFault(PermanentError):
    """A handler kept failing with an exception that is not an outage (a bug, a poison)."""


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


class DeadLetterCap:
    """Counts dead letters in a row across every partition; past the cap, refuses for good."""

    def __init__(self, maximum: int) -> None:
        self._maximum = maximum
        self._in_a_row = 0
        self._tripped = False
        self._lock = threading.Lock()

    def handled(self) -> None:
        """A message was handled: the run of dead letters is broken."""
        with self._lock:
            self._in_a_row = 0

    def count(self, record: Record, error: str, *, counts: bool) -> None:
        """Counts one more dead letter, before it is sent.

        Raises:
            DeadLetterCapExceeded: more than the cap in a row (or the cap was hit before).
        """
        with self._lock:
            self._in_a_row += 1 if counts else 0
            self._tripped = self._tripped or self._in_a_row > self._maximum
            if not self._tripped:
                return
        raise DeadLetterCapExceeded(
            f"{self._in_a_row} consecutive messages could not be processed "
            f"(last: {record.topic}[{record.partition}]@{record.offset}: {error[:300]}); "
            "stopping instead of dead-lettering everything. Fix the cause, then restart."
        )


class BatchProcessor:
    """Takes a lane's batch through decoding, the handler, retries and the DLQ."""

    def __init__(
        self,
        settings: CommonSettings,
        *,
        group_id: str,
        specs: dict[str, TopicSpec],
        handler: Handler,
        producer: EventProducer,
        stop: threading.Event,
    ) -> None:
        self._settings = settings
        self._group_id = group_id
        self._specs = specs
        self._handler = handler
        self._producer = producer
        self._stop = stop
        self._cap = DeadLetterCap(settings.dlq_max_consecutive)

    def process(self, lane: Lane, batch: list[Inbound[Any]], finished: Finished) -> None:
        """Finishes every message of the batch: handled or dead-lettered.

        Raises:
            Abandoned: the rest of the batch is left unfinished (stopping, partition lost).
            DeadLetterCapExceeded: too many consecutive messages were dead-lettered.
        """
        started = time.monotonic()
        self._handle(lane, batch, finished)
        BATCH_SECONDS.labels(self._group_id).observe(time.monotonic() - started)

    def _handle(self, lane: Lane, batch: list[Inbound[Any]], finished: Finished) -> None:
        pending = batch
        while pending:
            verdict = self._call(lane, pending)
            if isinstance(verdict, _Undecodable):
                pending = self._without_undecodable(lane, pending, finished)
            elif isinstance(verdict, PermanentError):
                pending = self._rejected(lane, pending, verdict, finished)
            else:
                self._settle(lane, pending, verdict, finished)
                pending = []

    def _without_undecodable(
        self, lane: Lane, batch: list[Inbound[Any]], finished: Finished
    ) -> list[Inbound[Any]]:
        """Dead-letters the batch's undecodable messages; returns the others, to hand again.

        The handler read an undecodable message and stopped there; it is called again with
        the rest of its batch (handlers are idempotent), so one bad message costs one extra
        call, not a message-by-message re-run.
        """
        valid = []
        for message in batch:
            error = _decoding_error(message)
            if error is None:
                valid.append(message)
                continue
            self._dead_letter(lane, message, "undecodable", str(error))
            finished([message])
        return valid

    def _settle(
        self,
        lane: Lane,
        batch: list[Inbound[Any]],
        rejections: Sequence[Rejection],
        finished: Finished,
    ) -> None:
        """Applies a handler's result: its rejections are dead-lettered, the rest is done."""
        if not rejections:
            self._cap.handled()
            finished(list(batch))
            return
        by_offset = {(r.message.position, r.message.offset): r for r in rejections}
        unknown = set(by_offset) - {(m.position, m.offset) for m in batch}
        if unknown:
            log.error("the handler rejected messages not in its batch: %s", sorted(unknown))
        for message in batch:
            rejection = by_offset.get((message.position, message.offset))
            if rejection is None:
                self._cap.handled()
            else:
                counts = rejection.counts_toward_cap
                self._dead_letter(lane, message, "rejected", rejection.reason, counts=counts)
            finished([message])

    def _rejected(
        self,
        lane: Lane,
        batch: list[Inbound[Any]],
        rejection: PermanentError,
        finished: Finished,
    ) -> list[Inbound[Any]]:
        """Applies a PermanentError; returns the messages still to hand to the handler."""
        named = rejection.message
        positions = [(m.position, m.offset) for m in batch]
        if named is not None and (named.position, named.offset) in positions:
            index = positions.index((named.position, named.offset))
            self._settle(
                lane, batch[: index + 1], [_as_rejection(batch[index], rejection)], finished
            )
            return batch[index + 1 :]
        if len(batch) > 1:
            # Some message of the batch is poison and the handler did not say which:
            # find out by handling them one by one.
            for message in batch:
                self._handle(lane, [message], finished)
            return []
        reason = "handler_error" if isinstance(rejection, _HandlerFault) else "rejected"
        counts = rejection.counts_toward_cap
        self._dead_letter(lane, batch[0], reason, str(rejection), counts=counts)
        finished(list(batch))
        return []

    def _call(
        self, lane: Lane, batch: list[Inbound[Any]]
    ) -> Sequence[Rejection] | PermanentError | _Undecodable:
        """Calls the handler until it stops raising; outages are retried for as long as they last.

        Other exceptions (a bug, or a message the code cannot handle) are retried
        RBR_UNEXPECTED_ERROR_RETRIES times, then returned as a rejection so the message is
        dead-lettered instead of blocking its partition forever.

        Raises:
            Abandoned: the consumer is stopping or the partition went to another member.
        """
        attempt = faults = 0
        while True:
            self._check_abandoned(lane, attempt)
            try:
                returned = self._invoke(batch)
            except PermanentError as rejection:
                lane.retrying_since = None
                return rejection
            except Exception as error:  # noqa: BLE001 - classified below
                if _names_one_of(error, batch):
                    lane.retrying_since = None
                    return _UNDECODABLE
                attempt += 1
                fault = not is_outage(error)
                faults += fault
                if faults > self._settings.unexpected_error_retries:
                    lane.retrying_since = None
                    return _HandlerFault(f"{type(error).__name__}: {error}"[:1000])
                self._back_off(lane, attempt, error, fault=fault)
                continue
            lane.retrying_since = None
            return list(returned or ())

    def _invoke(self, batch: list[Inbound[Any]]) -> Sequence[Rejection] | None:
        first = batch[0]
        context: dict[str, object] = {"topic": first.topic, "group": self._group_id}
        if len(batch) == 1:
            context |= {"bucket": first.key_text, "event_id": first.event and first.event.id}
        with log_context(**context):
            return self._handler(batch)

    def _check_abandoned(self, lane: Lane, attempt: int) -> None:
        if lane.closed or (self._stop.is_set() and attempt > 0):
            raise Abandoned

    def _back_off(self, lane: Lane, attempt: int, error: Exception, *, fault: bool) -> None:
        delay = backoff_delay(
            attempt, self._settings.retry_initial_backoff, self._settings.retry_max_backoff
        )
        if lane.retrying_since is None:
            lane.retrying_since = time.monotonic()
        HANDLER_RETRIES.labels(self._group_id).inc()
        log.warning(
            "%s, retrying in %.1fs (attempt %d): %s: %s",
            "unexpected error" if fault else "transient failure",
            delay,
            attempt,
            type(error).__name__,
            str(error)[:500],
            extra={"group": self._group_id, "topic": lane.topic, "partition": lane.partition},
            exc_info=error if fault and attempt == 1 else None,
        )
        deadline = time.monotonic() + delay
        while not self._stop.is_set() and not lane.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._stop.wait(min(0.2, remaining))

    def _dead_letter(
        self, lane: Lane, record: Record, reason: str, error: str, *, counts: bool = True
    ) -> None:
        self._cap.count(record, error, counts=counts)
        spec = self._specs[record.topic]
        message = dead_letter_message(
            record, spec.dlq, group=self._group_id, reason=reason, error=error
        )
        self._send(lane, message)
        MESSAGES_DEAD_LETTERED.labels(self._group_id, record.topic, reason).inc()
        log.error(
            "message dead-lettered to %s: %s",
            spec.dlq,
            error[:500],
            extra={
                "group": self._group_id,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "bucket": record.key_text,
            },
        )

    def _send(self, lane: Lane, message: OutgoingMessage) -> None:
        """Sends a dead letter, retrying every failure for as long as it lasts."""
        attempt = 0
        while True:
            self._check_abandoned(lane, attempt)
            try:
                self._producer.send_messages([message])
            except Exception as error:  # noqa: BLE001 - a dead letter is never given up
                attempt += 1
                self._back_off(lane, attempt, error, fault=False)
                continue
            lane.retrying_since = None
            return


class _Undecodable:
    """The handler read a message of its batch that is not a valid event."""


_UNDECODABLE = _Undecodable()


def _names_one_of(error: Exception, batch: list[Inbound[Any]]) -> bool:
    """Tells whether the error is the failed validation of one of the batch's messages.

    The message must fail to decode itself: the batch is handed again without it, so an
    error that merely names a valid message would have the handler called forever.
    """
    if not isinstance(error, UndecodableMessage):
        return False
    named = error.message
    return any(message is named for message in batch) and _decoding_error(named) is not None


def _decoding_error(message: Inbound[Any]) -> UndecodableMessage | None:
    try:
        message.event  # noqa: B018 - reading it validates it
    except UndecodableMessage as error:
        return error
    return None


def _as_rejection(message: Inbound[Any], error: PermanentError) -> Rejection:
    return Rejection(message, str(error), error.counts_toward_cap)
