"""A producer whose `send` returns only once the broker has the event.

Idempotent with acks=all: a retry inside librdkafka never duplicates or reorders a message.
Callers treat an event as sent only when `send` returns; on failure it raises, and the caller
retries (consumers: the batch is retried; the registrar: the outbox row stays).

A librdkafka producer that hit a fatal error (or was closed) never delivers again; the
`EventProducer` then replaces it with a new one, so the caller's retry can succeed. Whether
the last send failed is its `readiness()`, for a service's `/readyz`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from prometheus_client import Counter
from pydantic import BaseModel

from rbr_runtime.kafka.codec import CONTENT_TYPE, CONTENT_TYPE_HEADER, encode, make_event
from rbr_runtime.kafka.config import producer_config
from rbr_runtime.settings import CommonSettings
from rbr_schemas import CloudEvent, TopicSpec, utcnow

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, str | bytes | None]]

EVENTS_PRODUCED = Counter(
    "rbr_events_produced_total", "Messages the broker confirmed, by topic.", ["topic"]
)
PRODUCE_FAILURES = Counter(
    "rbr_produce_failures_total", "Messages the broker did not confirm, by topic.", ["topic"]
)
PRODUCERS_RENEWED = Counter(
    "rbr_producers_renewed_total", "Producers replaced after a fatal error or being closed."
)


class DeliveryError(Exception):
    """The broker did not confirm a message; nothing may be treated as sent."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal
        """The producer can never deliver again (it is replaced before this is raised)."""


@dataclass(frozen=True)
class OutgoingMessage:
    """One message to produce: topic, key, raw value (None is a tombstone) and headers."""

    topic: str
    key: str | bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)


class _PendingBatch:
    """Tracks the delivery reports of one batch of messages."""

    def __init__(self, size: int) -> None:
        self.remaining = size
        self.errors: list[str] = []
        self.fatal = False
        self.done = threading.Event()
        self._lock = threading.Lock()
        if size == 0:
            self.done.set()

    def on_delivery(self, error: KafkaError | None, message: Message) -> None:
        with self._lock:
            if error is not None:
                self.errors.append(f"{message.topic()}: {error.str()}")
                self.fatal |= bool(error.fatal())
                PRODUCE_FAILURES.labels(message.topic()).inc()
            else:
                EVENTS_PRODUCED.labels(message.topic()).inc()
            self.remaining -= 1
            if self.remaining == 0:
                self.done.set()


class EventProducer:
    """Produces CloudEvents (and raw messages for the DLQ and replay) with confirmed delivery.

    Safe to share between threads.
    """

    def __init__(self, settings: CommonSettings, source: str) -> None:
        self._config = producer_config(settings)
        self._producer = Producer(self._config)
        self._renew_lock = threading.Lock()
        self._source = source
        self._delivery_timeout = settings.kafka_message_timeout_ms / 1000 + 5
        self._failure: str | None = None

    def readiness(self) -> str | None:
        """Returns why the last send failed, or None when it succeeded (or none was made)."""
        return self._failure

    @property
    def source(self) -> str:
        """Returns the CloudEvents source this producer stamps on its events."""
        return self._source

    def event(
        self,
        spec: TopicSpec,
        data: BaseModel,
        *,
        subject: str | None = None,
        event_id: str | None = None,
    ) -> CloudEvent[Any]:
        """Builds an event of the topic's type with this producer's source."""
        return make_event(spec, data, source=self._source, subject=subject, event_id=event_id)

    def send(
        self,
        spec: TopicSpec,
        key: str,
        data: BaseModel,
        *,
        subject: str | None = None,
        event_id: str | None = None,
    ) -> CloudEvent[Any]:
        """Produces one event and waits until the broker confirms it.

        Raises:
            DeliveryError: the broker did not confirm the message in time.
        """
        event = self.event(spec, data, subject=subject, event_id=event_id)
        self.send_events(spec, [(key, event)])
        return event

    def send_events(
        self, spec: TopicSpec, keyed_events: Iterable[tuple[str, CloudEvent[Any]]]
    ) -> None:
        """Produces several events of one topic and waits until all are confirmed."""
        self.send_messages(
            [
                OutgoingMessage(
                    spec.name, key, encode(event), [(CONTENT_TYPE_HEADER, CONTENT_TYPE)]
                )
                for key, event in keyed_events
            ]
        )

    def send_tombstone(self, spec: TopicSpec, key: str) -> None:
        """Produces a null value for the key (removal on a compacted topic)."""
        self.send_messages([OutgoingMessage(spec.name, key, None)])

    def send_messages(self, messages: Sequence[OutgoingMessage]) -> None:
        """Produces raw messages and waits until all are confirmed.

        Raises:
            DeliveryError: at least one message was not confirmed; any of them may or may not
                have been written, so the caller must retry all (consumers are idempotent).
                A fatal one has already replaced the producer: the retry uses a new one.
        """
        producer = self._producer
        pending = _PendingBatch(len(messages))
        try:
            for message in messages:
                self._produce(producer, message, pending)
            self._wait(producer, pending)
        except DeliveryError as error:
            self._failed(producer, error)
            raise
        self._failure = None

    def _failed(self, producer: Producer, error: DeliveryError) -> None:
        if self._failure is None:
            self._failure = f"cannot publish since {utcnow():%Y-%m-%d %H:%M:%S} UTC: {error}"[:300]
        if not error.fatal:
            return
        with self._renew_lock:
            if self._producer is not producer:
                return  # another thread replaced it already
            self._producer = Producer(self._config)
        PRODUCERS_RENEWED.inc()
        log.error("producer broken for good (%s); replaced by a new one", str(error)[:300])

    def _produce(
        self, producer: Producer, message: OutgoingMessage, pending: _PendingBatch
    ) -> None:
        while True:
            try:
                producer.produce(
                    message.topic,
                    key=message.key,
                    value=message.value,
                    headers=list(message.headers) or None,
                    on_delivery=pending.on_delivery,
                )
                return
            except BufferError:
                # The local queue is full: serve delivery reports to make room.
                producer.poll(0.1)
            except KafkaException as error:
                fatal = bool(error.args and error.args[0].fatal())
                raise DeliveryError(
                    f"cannot produce to {message.topic}: {error}", fatal=fatal
                ) from error
            except RuntimeError as error:
                # "Producer has been closed": this one will never produce again.
                raise DeliveryError(
                    f"cannot produce to {message.topic}: {error}", fatal=True
                ) from error

    def _wait(self, producer: Producer, pending: _PendingBatch) -> None:
        deadline = time.monotonic() + self._delivery_timeout
        while not pending.done.is_set():
            if time.monotonic() > deadline:
                raise DeliveryError(f"{pending.remaining} message(s) not confirmed in time")
            producer.poll(0.05)
        if pending.errors:
            raise DeliveryError(
                f"broker refused or timed out: {pending.errors[0]}", fatal=pending.fatal
            )

    def flush(self, timeout: float = 10.0) -> int:
        """Waits for outstanding messages; returns how many are still not delivered."""
        remaining: int = self._producer.flush(timeout)
        if remaining:
            log.error("producer closed with %d message(s) undelivered", remaining)
        return remaining
