"""Reading every bucket's registration from `bucket.registered` without joining a group.

`rbr run-task extract_logs` runs beside the service; joining the service's consumer group
would take buckets away from it for a rebalance, so the task reads the compacted topic
directly, from the beginning to its end.
"""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from rbr_runtime.kafka import UndecodableMessage, decode
from rbr_runtime.kafka.config import client_config
from rbr_runtime.settings import CommonSettings
from rbr_schemas import BUCKET_REGISTERED, BucketRegistered


def read_registrations(settings: CommonSettings, timeout: float = 60.0) -> list[BucketRegistered]:
    """Returns the current registration of every bucket (removed buckets left out).

    Raises:
        TimeoutError: the topic could not be read to its end in time.
    """
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"{settings.service_name}-task",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        topic = BUCKET_REGISTERED.name
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        latest: dict[str, BucketRegistered | None] = {}
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(at_end) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end in {timeout:.0f}s")
            for message in consumer.consume(500, 0.2):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(message.partition() or 0)
                    continue
                at_end.discard(message.partition() or 0)
                _apply(latest, message.key(), message.value())
    finally:
        consumer.close()
    return sorted((r for r in latest.values() if r is not None), key=lambda r: r.name)


def _apply(
    latest: dict[str, BucketRegistered | None], key: bytes | None, value: bytes | None
) -> None:
    if key is None:
        return
    name = key.decode("utf-8", "replace")
    if value is None:
        latest[name] = None
        return
    try:
        latest[name] = decode(BUCKET_REGISTERED, value).data
    except UndecodableMessage:
        return
