"""Reading every bucket's registration from `bucket.registered`, without joining a group.

`rbr run-task pull_updates` and `health_check` act on the whole fleet, not on a replica's
share: they read every partition from the beginning to its end, keeping the latest record
per bucket (a tombstone removes it).
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from rbr_runtime.kafka.codec import UndecodableMessage, decode
from rbr_runtime.kafka.config import consumer_config
from rbr_runtime.settings import CommonSettings
from rbr_schemas import BUCKET_REGISTERED, BucketRegistered


def read_registrations(
    settings: CommonSettings, timeout: float = 60.0
) -> dict[str, BucketRegistered]:
    """Returns the current registration of every bucket, by name.

    Raises:
        TimeoutError: the topic could not be read to its end in time (broker down?).
    """
    config = consumer_config(settings, f"{settings.service_name}-manual-{uuid.uuid4().hex[:8]}")
    # A one-off read to the end: do not let the broker hold each empty fetch for 500 ms.
    consumer = Consumer({**config, "fetch.wait.max.ms": 20})
    records: dict[str, BucketRegistered] = {}
    try:
        metadata = consumer.list_topics(BUCKET_REGISTERED.name, timeout=timeout)
        partitions = metadata.topics[BUCKET_REGISTERED.name].partitions
        consumer.assign(
            [TopicPartition(BUCKET_REGISTERED.name, p, OFFSET_BEGINNING) for p in partitions]
        )
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(at_end) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{BUCKET_REGISTERED.name} not read to its end in {timeout}s")
            for message in consumer.consume(500, 0.2):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(message.partition() or 0)
                    elif error.fatal():
                        raise KafkaException(error)
                    continue
                at_end.discard(message.partition() or 0)
                _apply(records, message.key(), message.value())
    finally:
        consumer.close()
    return records


def _apply(
    records: dict[str, BucketRegistered], key: bytes | str | None, value: bytes | str | None
) -> None:
    if key is None:
        return
    name = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    if value is None:
        records.pop(name, None)
        return
    try:
        record: BucketRegistered = decode(
            BUCKET_REGISTERED, value if isinstance(value, bytes) else value.encode()
        ).data
    except UndecodableMessage:
        return
    records[name] = record
