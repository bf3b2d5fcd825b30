"""Kafka plumbing: one place for producing, consuming, topics and partition ownership.

The names below are imported on first use, so a module of the package (e.g. `kafka.lag` for
`rbr status`) loads without the consumer runner and its database imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rbr_runtime.kafka.codec import UndecodableMessage, decode, encode, make_event
    from rbr_runtime.kafka.consumer import (
        ConsumerRunner,
        DeadLetterCapExceeded,
        Inbound,
        PermanentError,
        Record,
        Rejection,
    )
    from rbr_runtime.kafka.directory import BucketDirectory
    from rbr_runtime.kafka.producer import DeliveryError, EventProducer, OutgoingMessage
    from rbr_runtime.kafka.topics import ensure_topics

# Each public name and the module that defines it.
_MODULES = {
    "BucketDirectory": "directory",
    "ConsumerRunner": "consumer",
    "DeadLetterCapExceeded": "consumer",
    "DeliveryError": "producer",
    "EventProducer": "producer",
    "Inbound": "consumer",
    "OutgoingMessage": "producer",
    "PermanentError": "consumer",
    "Record": "consumer",
    "Rejection": "consumer",
    "UndecodableMessage": "codec",
    "decode": "codec",
    "encode": "codec",
    "ensure_topics": "topics",
    "make_event": "codec",
}

__all__ = [
    "BucketDirectory",
    "ConsumerRunner",
    "DeadLetterCapExceeded",
    "DeliveryError",
    "EventProducer",
    "Inbound",
    "OutgoingMessage",
    "PermanentError",
    "Record",
    "Rejection",
    "UndecodableMessage",
    "decode",
    "encode",
    "ensure_topics",
    "make_event",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
    globals()[name] = value
    return value
