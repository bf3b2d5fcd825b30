"""Kafka plumbing: one place for producing, consuming, topics and partition ownership."""

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
