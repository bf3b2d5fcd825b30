"""Encoding events to Kafka message values and decoding them back, validated."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from pydantic import BaseModel, ValidationError

from rbr_schemas import CloudEvent, TopicSpec, utcnow

CONTENT_TYPE_HEADER = "content-type"
CONTENT_TYPE = b"application/cloudevents+json; charset=UTF-8"
MAX_REASON_CHARS = 1000


class UndecodableMessage(ValueError):
    """A message value is not a valid event of its topic; it can never be processed.

    `message` is the consumed message at fault, when a consumer's message raised it.
    """

    message: Any = None


@cache
def _event_model_for(data_model: type[BaseModel]) -> type[CloudEvent[Any]]:
    return CloudEvent[data_model]  # type: ignore[valid-type]


def event_model(spec: TopicSpec) -> type[CloudEvent[Any]]:
    """Returns the CloudEvent model of a topic, parametrised with the topic's data model."""
    return _event_model_for(spec.data_model)


def make_event(
    spec: TopicSpec,
    data: BaseModel,
    *,
    source: str,
    subject: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> CloudEvent[Any]:
    """Wraps data in a CloudEvent of the topic's type.

    Args:
        spec: the topic the event is for.
        data: the event data; must be an instance of the topic's data model.
        source: URI reference of the producer, e.g. /rbr/poller.
        subject: the bucket the event is about.
        event_id: a deterministic id, so that a re-sent event is recognisably the same.
        time: when the event happened; now by default.
    """
    if not isinstance(data, spec.data_model):
        raise TypeError(f"{spec.name} carries {spec.data_model.__name__}, not {type(data)}")
    fields: dict[str, Any] = {
        "source": source,
        "type": spec.event_type,
        "subject": subject,
        "data": data,
        "time": time or utcnow(),
    }
    if event_id is not None:
        fields["id"] = event_id
    return event_model(spec)(**fields)


def encode(event: CloudEvent[Any]) -> bytes:
    """Returns the structured-mode JSON of an event (unset attributes left out, not null)."""
    return event.structured_json()


def _describe(error: ValidationError) -> str:
    parts = []
    for detail in error.errors()[:5]:
        location = ".".join(str(item) for item in detail["loc"]) or "(value)"
        parts.append(f"{location}: {detail['msg']}")
    return "; ".join(parts)


def decode(spec: TopicSpec, value: bytes) -> CloudEvent[Any]:
    """Parses and validates a message value as an event of the topic.

    Raises:
        UndecodableMessage: the value is not JSON, not a CloudEvent, of another type, or its
            data does not match the topic's schema. The message says which, without echoing
            the (possibly hostile) value.
    """
    try:
        event = event_model(spec).model_validate_json(value)
    except ValidationError as error:
        raise UndecodableMessage(
            f"not a valid {spec.name} event: {_describe(error)}"[:MAX_REASON_CHARS]
        ) from None
    if event.type != spec.event_type:
        raise UndecodableMessage(
            f"unsupported event type {event.type[:100]!r} on {spec.name} "
            f"(this consumer understands {spec.event_type})"
        )
    return event
