"""Announcing stored raw objects on `logs.extracted`, pulled or copied alike.

An object's event is recorded (`extract_cursors.pending_event`) in the transaction that
records the object, then sent, then cleared: an event the broker did not confirm is sent
again at the bucket's next extraction, so a stored object is never left unannounced.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from prometheus_client import Counter

from rbr_log_extractor.store import ExtractState
from rbr_runtime.kafka import EventProducer
from rbr_schemas import LOGS_EXTRACTED, LogsExtracted

log = logging.getLogger(__name__)

EVENT_NAMESPACE = uuid.UUID("3c8d7a52-8f0e-4b59-a2f4-0b7e5d7c1f20")
OBJECTS = Counter("rbr_extractor_objects_total", "Raw objects stored, by source.", ["source"])
BYTES = Counter("rbr_extractor_bytes_total", "Raw log bytes stored, by source.", ["source"])


def event_id(object_id: str) -> str:
    """Returns the logs.extracted event id of an object (the same when it is re-sent)."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"logs.extracted:{object_id}"))


class Announcer:
    """Sends the `logs.extracted` events of stored objects, recorded first."""

    def __init__(self, state: ExtractState, producer: EventProducer) -> None:
        self._state = state
        self._producer = producer

    def flush(self) -> None:
        """Waits for the events sent to be confirmed (or to fail)."""
        self._producer.flush()

    def send(self, event: LogsExtracted) -> None:
        """Sends an object's event (its id derives from the object: re-sending is harmless)."""
        self._producer.send(
            LOGS_EXTRACTED,
            event.name,
            event,
            subject=event.name,
            event_id=event_id(event.object_id),
        )
        OBJECTS.labels(event.source.value).inc()
        BYTES.labels(event.source.value).inc(event.size_bytes)

    def send_pending(self, name: str) -> None:
        """Sends the event of an object stored earlier whose announcement was not confirmed."""
        pending = self._state.state(name).pending_event
        if pending is None:
            return
        log.info("announcing an object stored by an earlier cycle")
        self.send(LogsExtracted.model_validate_json(pending))
        self._state.clear_pending(name, pending)

    def announce(self, event: LogsExtracted, record: Callable[[str], None]) -> None:
        """Records a stored object with its event (`record` gets the event), then sends it."""
        payload = event.model_dump_json()
        record(payload)
        self.send_recorded(event, payload)

    def send_recorded(self, event: LogsExtracted, payload: str) -> None:
        """Sends an event recorded as pending, then clears it."""
        self.send(event)
        self._state.clear_pending(event.name, payload)
