"""Reading topics and committed offsets in tests, without joining a consumer group.

Group joins on the embedded broker take half the session timeout; assigning partitions
directly reads a topic in milliseconds.
"""

from __future__ import annotations

import time
from typing import Any

from cloudevents.core.exceptions import BaseCloudEventException
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from rbr_runtime.kafka.codec import decode
from rbr_schemas import CloudEvent, TopicSpec
from rbr_testing.cloudevents_sdk import sdk_event


def _consumer(bootstrap: str, group: str = "rbr-test-reader") -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "log_level": 0,
        }
    )


def read_topic(
    bootstrap: str, topic: str, *, at_least: int = 0, timeout: float = 20.0
) -> list[Message]:
    """Returns every message on the topic, waiting until there are at least `at_least`.

    Raises:
        AssertionError: fewer than `at_least` messages arrived before the deadline.
    """
    consumer = _consumer(bootstrap)
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        return _drain(consumer, len(partitions), at_least, timeout, topic)
    finally:
        consumer.close()


def _drain(
    consumer: Consumer, partitions: int, at_least: int, timeout: float, topic: str
) -> list[Message]:
    messages: list[Message] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(at_end) < partitions or len(messages) < at_least:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{topic}: {len(messages)} message(s) after {timeout}s, wanted {at_least}"
            )
        for message in consumer.consume(500, 0.1):
            error = message.error()
            if error is None:
                messages.append(message)
                at_end.discard(message.partition())
            elif error.code() == KafkaError._PARTITION_EOF:
                at_end.add(message.partition() or 0)
    return messages


def read_events(
    bootstrap: str, spec: TopicSpec, *, at_least: int = 0, timeout: float = 20.0
) -> list[CloudEvent[Any]]:
    """Returns the decoded events on a topic (tombstones skipped).

    Each is also read with the CloudEvents SDK, so every test that reads what a service
    produced checks that consumers written with the SDK accept it.

    Raises:
        AssertionError: the SDK refuses one of the events.
    """
    messages = read_topic(bootstrap, spec.name, at_least=at_least, timeout=timeout)
    events = []
    for message in messages:
        value = message.value()
        if not value:
            continue
        raw = value if isinstance(value, bytes) else value.encode()
        _check_with_sdk(spec, raw, message)
        events.append(decode(spec, raw))
    return events


def _check_with_sdk(spec: TopicSpec, raw: bytes, message: Message) -> None:
    try:
        sdk_event(raw, message.key(), message.headers())
    except (ValueError, TypeError, BaseCloudEventException) as error:
        raise AssertionError(
            f"the CloudEvents SDK refuses an event on {spec.name}: {error}"
        ) from error


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Returns the group's committed offset per partition (partitions never committed left out)."""
    consumer = _consumer(bootstrap, group)
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        offsets = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in offsets if tp.offset >= 0}
