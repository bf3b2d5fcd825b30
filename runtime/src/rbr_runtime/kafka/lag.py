"""Consumer lag per group: correct on Kafka and on the embedded broker, in bounded time.

ListOffsets answers are wrong on the embedded broker (DESIGN.md), so a partition's end comes
from fetching it from the group's committed offset: the end in the first fetch response
(`get_watermark_offsets(cached=True)`, as the consumers' lag metric), or the messages counted
to the end of the partition, whichever comes first. Every partition of a group is fetched at
once, every group at once; a partition whose end is not known by the deadline is reported as
"at least" the messages read (`capped`).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from rbr_runtime.kafka.config import client_config
from rbr_runtime.kafka.probe import quiet_admin
from rbr_runtime.settings import CommonSettings

DEFAULT_TIMEOUT = 30.0
# A partition at its end answers a fetch after this wait at most (librdkafka's default: 500).
FETCH_WAIT_MS = 100

PartitionKey = tuple[str, int]


@dataclass(frozen=True)
class PartitionLag:
    """How far a group is behind on one partition (`capped`: at least `lag`)."""

    group: str
    topic: str
    partition: int
    committed: int | None
    lag: int
    capped: bool


def _group_ids(admin: AdminClient, timeout: float) -> list[str]:
    result = admin.list_consumer_groups(request_timeout=timeout).result()
    return sorted(group.group_id for group in result.valid)


def all_groups_lag(
    settings: CommonSettings, topics: list[str], timeout: float = DEFAULT_TIMEOUT
) -> list[PartitionLag]:
    """Returns the lag of every consumer group on the topics, all groups at once."""
    deadline = time.monotonic() + timeout
    admin = quiet_admin(settings)
    groups = _group_ids(admin, timeout)
    if not groups:
        return []
    with ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="lag") as pool:
        counted = pool.map(
            lambda group: group_lag(settings, group, topics, _left(deadline), admin), groups
        )
        return [lag for lags in counted for lag in lags]


def group_lag(
    settings: CommonSettings,
    group: str,
    topics: list[str],
    timeout: float = DEFAULT_TIMEOUT,
    admin: AdminClient | None = None,
) -> list[PartitionLag]:
    """Returns the group's lag on every partition of the topics it has committed on."""
    deadline = time.monotonic() + timeout
    committed = _committed(admin or quiet_admin(settings), group, topics, deadline)
    if not committed:
        return []
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": group,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": FETCH_WAIT_MS,
        }
    )
    try:
        return _read_to_end(consumer, group, committed, deadline)
    finally:
        consumer.close()


def _left(deadline: float) -> float:
    """Returns the seconds to the deadline (a request needs a positive timeout)."""
    return max(0.1, deadline - time.monotonic())


def _committed(
    admin: AdminClient, group: str, topics: list[str], deadline: float
) -> list[TopicPartition]:
    """Returns the group's positions on the topics it has committed on (-1001: none yet).

    One request for the group's every committed offset: asking about each partition of every
    topic costs seconds on the embedded broker.
    """
    request = [ConsumerGroupTopicPartitions(group)]
    answer = admin.list_consumer_group_offsets(request, request_timeout=_left(deadline))
    offsets = {
        (tp.topic, tp.partition): tp.offset
        for tp in answer[group].result().topic_partitions
        if tp.topic in topics and tp.offset >= 0
    }
    active = sorted({topic for topic, _ in offsets})
    if not active:
        return []
    existing = admin.list_topics(timeout=_left(deadline)).topics
    return [
        TopicPartition(topic, partition, offsets.get((topic, partition), OFFSET_INVALID))
        for topic in active
        for partition in sorted(existing[topic].partitions)
    ]


def _read_to_end(
    consumer: Consumer, group: str, committed: list[TopicPartition], deadline: float
) -> list[PartitionLag]:
    """Fetches every partition from the group's position until each one's end is known."""
    if not committed:
        return []
    counts: dict[PartitionKey, int] = {(tp.topic, tp.partition): 0 for tp in committed}
    known: dict[PartitionKey, PartitionLag] = {}
    consumer.assign([_start(tp) for tp in committed])
    while len(known) < len(committed) and time.monotonic() < deadline:
        for message in consumer.consume(num_messages=1000, timeout=min(0.1, _left(deadline))):
            key = (message.topic() or "", message.partition() or 0)
            error = message.error()
            if error is None:
                counts[key] += 1
            elif error.code() == KafkaError._PARTITION_EOF and key not in known:
                known[key] = _partition_lag(group, _committed_of(committed, key), counts[key])
        for position in committed:
            key = (position.topic, position.partition)
            if key not in known and (lag := _from_watermarks(consumer, group, position)):
                known[key] = lag
    return [
        known.get((tp.topic, tp.partition))
        or _partition_lag(group, tp, counts[(tp.topic, tp.partition)], capped=True)
        for tp in committed
    ]


def _start(position: TopicPartition) -> TopicPartition:
    offset = position.offset if position.offset >= 0 else OFFSET_BEGINNING
    return TopicPartition(position.topic, position.partition, offset)


def _committed_of(committed: list[TopicPartition], key: PartitionKey) -> TopicPartition:
    return next(tp for tp in committed if (tp.topic, tp.partition) == key)


def _from_watermarks(
    consumer: Consumer, group: str, position: TopicPartition
) -> PartitionLag | None:
    """Returns the lag from the partition's ends in the last fetch response (None: none yet)."""
    low, high = consumer.get_watermark_offsets(position, cached=True)
    start = position.offset if position.offset >= 0 else low
    if high < 0 or start < 0:
        return None
    return _partition_lag(group, position, max(0, high - start))


def _partition_lag(
    group: str, position: TopicPartition, behind: int, *, capped: bool = False
) -> PartitionLag:
    committed = position.offset if position.offset >= 0 else None
    return PartitionLag(group, position.topic, position.partition, committed, behind, capped)
