"""Reading events the way a consumer using the official CloudEvents SDK does.

Every event the registry puts on a topic must be one the SDK's current API (`cloudevents.core`,
Kafka binding, JSON format) accepts: other teams' consumers are written with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka
from cloudevents.core.formats.json import JSONFormat

Headers = Sequence[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None]


def sdk_event(
    value: bytes, key: bytes | str | None = None, headers: Headers | None = None
) -> BaseCloudEvent:
    """Returns the event the SDK reads from a Kafka message (raises what the SDK raises)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    message = KafkaMessage(
        headers={
            name: item.encode() if isinstance(item, str) else item or b"" for name, item in pairs
        },
        key=key,
        value=value,
    )
    return from_kafka(message, JSONFormat())
