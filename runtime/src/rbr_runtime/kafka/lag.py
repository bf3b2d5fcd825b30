"""Consumer lag per group, counted by reading: correct on Kafka and on the embedded broker.

ListOffsets answers are wrong on the embedded broker (DESIGN.md), so the end of a partition is
found by reading from the group's committed offset to the end. Counting stops at a cap, so a
huge backlog costs a bounded read and is reported as "at least".
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from rbr_runtime.kafka.config import admin_config, client_config
from rbr_runtime.settings import CommonSettings

DEFAULT_CAP = 100_000


@dataclass(frozen=True)
class PartitionLag:
    """How far a group is behind on one partition."""

    group: str
    topic: str
    partition: int
    committed: int | None
    lag: int
    capped: bool


def consumer_groups(settings: CommonSettings) -> list[str]:
    """Returns the consumer groups the broker knows."""
    admin = AdminClient(admin_config(settings))
    result = admin.list_consumer_groups(request_timeout=10).result()
    return sorted(group.group_id for group in result.valid)


def group_lag(
    settings: CommonSettings, group: str, topics: list[str], cap: int = DEFAULT_CAP
) -> list[PartitionLag]:
    """Returns the group's lag on every partition of the topics it has committed on."""
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": group,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        lags: list[PartitionLag] = []
        existing = consumer.list_topics(timeout=10).topics
        for topic in topics:
            metadata = existing.get(topic)
            if metadata is None or metadata.error is not None:
                continue
            partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
            committed = consumer.committed(partitions, timeout=10)
            if all(tp.offset < 0 for tp in committed):
                continue
            lags.extend(_count(consumer, group, tp, cap) for tp in committed)
        return lags
    finally:
        consumer.close()


def _count(consumer: Consumer, group: str, position: TopicPartition, cap: int) -> PartitionLag:
    start = position.offset if position.offset >= 0 else OFFSET_BEGINNING
    consumer.assign([TopicPartition(position.topic, position.partition, start)])
    behind = 0
    deadline = time.monotonic() + 30
    while behind < cap and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is None:
            continue
        error = message.error()
        if error is not None and error.code() == KafkaError._PARTITION_EOF:
            break
        if error is None:
            behind += 1
    committed = position.offset if position.offset >= 0 else None
    return PartitionLag(group, position.topic, position.partition, committed, behind, behind >= cap)
