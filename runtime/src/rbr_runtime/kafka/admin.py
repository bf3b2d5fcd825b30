"""Consumer-group offset operations: where a group is, and moving it back to reprocess.

Replaying a topic means moving a consumer group's committed offsets (`rbr replay`); its
consumers then reprocess from there, and since every consumer is idempotent the outcome is
the same rows, objects and alerts. Offsets of a group can only be changed while it has no
active member, so the plan is refused when it has any.

Correct on real Kafka without relying on what the embedded broker gets wrong: partition ends
come from fetch responses (`get_watermark_offsets(cached=True)`), not from ListOffsets, and
`offsets_for_times` answers are checked against the messages' timestamps, with a scan of the
partition as the fallback.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from rbr_runtime.kafka.config import admin_config, client_config
from rbr_runtime.settings import CommonSettings

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
READ_TIMEOUT = 15.0
SCAN_REPORT_EVERY = 10_000


class ReplayError(Exception):
    """The replay cannot be done as asked; the message says why and what to do."""


@dataclass(frozen=True)
class PartitionMove:
    """What a replay does to one partition.

    Attributes:
        partition: the partition.
        committed: the group's committed offset now (None: never committed).
        target: the offset the group will resume from.
        low: the partition's first offset.
        high: the partition's end (the offset the next message will get).
        note: why the target is what it is, when not obvious (e.g. clamped).
    """

    partition: int
    committed: int | None
    target: int
    low: int
    high: int
    note: str = ""

    @property
    def changes(self) -> bool:
        """Tells whether the move changes anything (an empty, never-read partition does not)."""
        if self.committed is None:
            return self.to_reprocess > 0
        return self.target != self.committed

    @property
    def to_reprocess(self) -> int:
        """Returns how many messages the group will read from the target to the end."""
        return max(0, self.high - self.target)

    def describe(self) -> str:
        """Returns one line: old -> new offset and what that means."""
        old = "none" if self.committed is None else str(self.committed)
        line = (
            f"partition {self.partition}: {old} -> {self.target} "
            f"({self.to_reprocess} message(s) to process; partition holds {self.low}..{self.high})"
        )
        if self.committed is not None and self.target > self.committed:
            line += f"; moves FORWARD, skipping {self.target - self.committed} message(s)"
        return f"{line}; {self.note}" if self.note else line


@dataclass(frozen=True)
class ReplayStart:
    """Where to replay from: exactly one of the three."""

    beginning: bool = False
    offset: int | None = None
    time: datetime | None = None

    def __post_init__(self) -> None:
        chosen = [self.beginning, self.offset is not None, self.time is not None]
        if sum(chosen) != 1:
            raise ValueError("choose exactly one of: from the beginning, an offset, a time")
        if self.offset is not None and self.offset < 0:
            raise ValueError("an offset is at least 0")
        if self.time is not None and self.time.tzinfo is None:
            raise ValueError("the time must carry a timezone")


@dataclass(frozen=True)
class GroupActivity:
    """Whether a consumer group is running.

    Attributes:
        members: members the broker listed (some brokers list none for a running group).
        state: the group's state, e.g. STABLE, EMPTY.
    """

    members: int
    state: str

    @property
    def active(self) -> bool:
        """Tells whether the group has members or is in a state only members give it."""
        return self.members > 0 or self.state in _ACTIVE_STATES

    def describe(self) -> str:
        """Returns e.g. "has 2 active member(s)"."""
        if self.members:
            return f"has {self.members} active member(s)"
        return f"is active (state {self.state}; the broker did not list its members)"


_ACTIVE_STATES = frozenset({"STABLE", "PREPARING_REBALANCE", "COMPLETING_REBALANCE"})


def _result(future: object, timeout: float) -> object:
    return future.result(timeout)  # type: ignore[attr-defined]


class GroupOffsets:
    """Reads and moves one consumer group's offsets on one topic."""

    def __init__(self, settings: CommonSettings, group: str, topic: str) -> None:
        self.group = group
        self.topic = topic
        self._settings = settings
        self._admin = AdminClient(admin_config(settings))

    def partitions(self) -> list[int]:
        """Returns the topic's partitions.

        Raises:
            ReplayError: the topic does not exist.
        """
        # All topics: asking for one by name would create it where auto-creation is on.
        metadata = self._admin.list_topics(timeout=READ_TIMEOUT).topics.get(self.topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise ReplayError(f"topic {self.topic!r} does not exist")
        return sorted(metadata.partitions)

    def activity(self) -> GroupActivity:
        """Returns whether the group is running and with how many members."""
        futures = self._admin.describe_consumer_groups([self.group], request_timeout=READ_TIMEOUT)
        description = _result(futures[self.group], READ_TIMEOUT)
        members = len(description.members or [])  # type: ignore[attr-defined]
        state = description.state  # type: ignore[attr-defined]
        return GroupActivity(members, state.name if state is not None else "UNKNOWN")

    def committed(self, partitions: Sequence[int]) -> dict[int, int | None]:
        """Returns the group's committed offset per partition (None where there is none)."""
        request = ConsumerGroupTopicPartitions(
            self.group, [TopicPartition(self.topic, p) for p in partitions]
        )
        futures = self._admin.list_consumer_group_offsets([request], request_timeout=READ_TIMEOUT)
        answer = _result(futures[self.group], READ_TIMEOUT)
        offsets: dict[int, int | None] = dict.fromkeys(partitions)
        for tp in answer.topic_partitions:  # type: ignore[attr-defined]
            offsets[tp.partition] = tp.offset if tp.offset >= 0 else None
        return offsets

    def plan(
        self,
        start: ReplayStart,
        partition: int | None = None,
        progress: Progress = lambda _: None,
    ) -> list[PartitionMove]:
        """Works out the new offset of each partition (or only of `partition`).

        Raises:
            ReplayError: the topic or partition does not exist, or the offset is outside it.
        """
        partitions = self.partitions()
        if partition is not None:
            if partition not in partitions:
                raise ReplayError(
                    f"{self.topic} has no partition {partition} (it has {len(partitions)})"
                )
            partitions = [partition]
        committed = self.committed(partitions)
        reader = _PartitionReader(self._settings, self.topic)
        try:
            return [
                self._move(reader, p, committed[p], start, explicit=partition is not None,
                           progress=progress)
                for p in partitions
            ]  # fmt: skip
        finally:
            reader.close()

    def _move(
        self,
        reader: _PartitionReader,
        partition: int,
        committed: int | None,
        start: ReplayStart,
        *,
        explicit: bool,
        progress: Progress,
    ) -> PartitionMove:
        low, high = reader.bounds(partition)
        if start.beginning:
            return PartitionMove(partition, committed, low, low, high)
        if start.offset is not None:
            wanted = PartitionMove(partition, committed, start.offset, low, high)
            return self._offset_move(wanted, explicit=explicit)
        assert start.time is not None
        target = reader.offset_for_time(partition, start.time, low, high, progress)
        return PartitionMove(partition, committed, target, low, high)

    def _offset_move(self, wanted: PartitionMove, *, explicit: bool) -> PartitionMove:
        """Keeps an asked-for offset inside the partition (an error for --partition)."""
        offset, low, high = wanted.target, wanted.low, wanted.high
        if low <= offset <= high:
            return wanted
        if explicit:
            raise ReplayError(
                f"offset {offset} is outside partition {wanted.partition} of {self.topic}, "
                f"which holds offsets {low}..{high}"
            )
        target = min(max(offset, low), high)
        return dataclasses.replace(
            wanted, target=target, note=f"offset {offset} clamped to {target}"
        )

    def apply(self, moves: Sequence[PartitionMove]) -> None:
        """Commits the new offsets for the group.

        Raises:
            ReplayError: the group has active members (it must be stopped first), or the
                broker refused.
        """
        activity = self.activity()
        if activity.active:
            raise refuse_active(self.group, activity)
        changed = [m for m in moves if m.changes]
        if not changed:
            return
        request = ConsumerGroupTopicPartitions(
            self.group, [TopicPartition(self.topic, m.partition, m.target) for m in changed]
        )
        futures = self._admin.alter_consumer_group_offsets([request], request_timeout=READ_TIMEOUT)
        try:
            answer = _result(futures[self.group], READ_TIMEOUT)
        except KafkaException as error:
            raise ReplayError(
                f"the broker refused to move {self.group}'s offsets: {error}. If a consumer of "
                "the group started meanwhile, stop it and try again."
            ) from error
        for tp in answer.topic_partitions:  # type: ignore[attr-defined]
            if tp.error is not None:
                raise ReplayError(f"partition {tp.partition}: {tp.error}")


def refuse_active(group: str, activity: GroupActivity) -> ReplayError:
    """Returns the error for a group that is running."""
    return ReplayError(
        f"consumer group {group!r} {activity.describe()}; offsets can only be moved while the "
        f"group is stopped. Stop every consumer of {group!r} (e.g. the {group} service's "
        "replicas; a killed one counts until its session times out) and run this again."
    )


class _PartitionReader:
    """Reads single messages of a topic's partitions without joining a group."""

    def __init__(self, settings: CommonSettings, topic: str) -> None:
        self._topic = topic
        self._consumer = Consumer(
            {
                **client_config(settings),
                "group.id": "rbr-replay-reader",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                # Single reads: an empty partition's EOF should not wait for data to arrive.
                "fetch.wait.max.ms": 10,
            }
        )
        self._eof_offset: int | None = None

    def close(self) -> None:
        self._consumer.close()

    def partitions(self, timeout: float) -> list[int]:
        """Returns the topic's partitions (none if the topic does not exist)."""
        metadata = self._consumer.list_topics(self._topic, timeout=timeout).topics.get(self._topic)
        if metadata is None or metadata.error is not None:
            return []
        return sorted(metadata.partitions)

    def bounds(self, partition: int) -> tuple[int, int]:
        """Returns the partition's (first offset, end offset), read by fetching."""
        tp = TopicPartition(self._topic, partition, OFFSET_BEGINNING)
        first = self._first_from(tp)
        _, high = self._consumer.get_watermark_offsets(
            TopicPartition(self._topic, partition), cached=True
        )
        if first is None:  # empty partition: its end is where EOF was reported
            end = self._eof_offset if self._eof_offset is not None else max(high, 0)
            return end, end
        return first[0], max(high, first[0] + 1)

    def message_at(self, partition: int, offset: int) -> tuple[int, int] | None:
        """Returns (offset, timestamp ms) of the first message at or after offset, if any."""
        return self._first_from(TopicPartition(self._topic, partition, offset))

    def _first_from(self, tp: TopicPartition) -> tuple[int, int] | None:
        self._consumer.assign([tp])
        self._eof_offset = None
        deadline = time.monotonic() + READ_TIMEOUT
        try:
            while time.monotonic() < deadline:
                message = self._consumer.poll(0.2)
                if message is None:
                    continue
                error = message.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    self._eof_offset = message.offset()
                    return None
                if error is not None:
                    raise ReplayError(f"cannot read {self._topic}: {error.str()}")
                return message.offset() or 0, message.timestamp()[1]
        finally:
            self._consumer.unassign()
        raise ReplayError(f"timed out reading {self._topic}[{tp.partition}]")

    def offset_for_time(
        self, partition: int, moment: datetime, low: int, high: int, progress: Progress
    ) -> int:
        """Returns the first offset whose message timestamp is at or after moment."""
        wanted = int(moment.timestamp() * 1000)
        if low >= high:
            return high
        answered = self._consumer.offsets_for_times(
            [TopicPartition(self._topic, partition, wanted)], timeout=READ_TIMEOUT
        )[0].offset
        candidate = answered if 0 <= answered <= high else high
        if self._confirms(partition, candidate, wanted, low, high):
            return candidate
        log.info(
            "offsets_for_times answered %d for %s[%d], which the timestamps contradict; "
            "scanning the partition",
            answered,
            self._topic,
            partition,
        )
        return self._scan(partition, wanted, low, high, progress)

    def _confirms(self, partition: int, candidate: int, wanted: int, low: int, high: int) -> bool:
        """Checks a candidate: its message is at/after the time, the one before is not."""
        if candidate < high:
            at = self.message_at(partition, candidate)
            if at is None or at[1] < wanted:
                return False
        if candidate > low:
            before = self.message_at(partition, candidate - 1)
            if before is not None and before[0] < candidate and before[1] >= wanted:
                return False
        return True

    def _scan(self, partition: int, wanted: int, low: int, high: int, progress: Progress) -> int:
        self._consumer.assign([TopicPartition(self._topic, partition, low)])
        read = 0
        deadline = time.monotonic() + READ_TIMEOUT
        try:
            while time.monotonic() < deadline:
                for message in self._consumer.consume(500, 0.2):
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            return high
                        raise ReplayError(f"cannot read {self._topic}: {error.str()}")
                    deadline = time.monotonic() + READ_TIMEOUT
                    offset = message.offset() or 0
                    if message.timestamp()[1] >= wanted:
                        return offset
                    read += 1
                    if read % SCAN_REPORT_EVERY == 0:
                        progress(f"partition {partition}: scanned {read} of {high - low} messages")
        finally:
            self._consumer.unassign()
        raise ReplayError(f"timed out scanning {self._topic}[{partition}]")


def topic_depth(settings: CommonSettings, topic: str, timeout: float = READ_TIMEOUT) -> int | None:
    """Returns how many messages a topic holds (end minus first offset, summed); None: no topic.

    Partition bounds are read by fetching (`_PartitionReader.bounds`), as everywhere here.
    """
    reader = _PartitionReader(settings, topic)
    try:
        partitions = reader.partitions(timeout)
        if not partitions:
            return None
        total = 0
        for partition in partitions:
            low, high = reader.bounds(partition)
            total += high - low
        return total
    finally:
        reader.close()
