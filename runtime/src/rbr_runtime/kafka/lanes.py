"""One lane per assigned partition: messages fetched ahead, the batch in hand, the commit point.

Pure bookkeeping, no broker: the consumer runner holds one lock around every call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rbr_runtime.kafka.messages import Inbound, Record, TopicPartitionKey


@dataclass(eq=False)
class Lane:
    """One partition of the assignment, handled in order: at most one batch in hand.

    Everything before the batch in hand is finished, so the commit point is the offset after
    the batch's finished prefix: it never passes a message still in hand, so a crash can lose
    nothing (arroyo commits the same way). Messages of the batch may finish in any order.
    """

    topic: str
    partition: int
    after: Lane | None = None
    """An older lane of the same partition whose batch is still in hand: this one waits."""
    queue: deque[Inbound[Any]] = field(default_factory=deque)
    owned: bool = True
    """False between a revoke and the assignment that gives the partition back."""
    closed: bool = False
    """The partition went to another member: nothing more of it is handled or committed."""
    in_hand: list[Inbound[Any]] | None = None
    handler_thread: Any = None
    scheduled: bool = False
    paused: bool = False
    next_offset: int | None = None
    """The offset after the last message taken in: anything below it is a duplicate."""
    commit_point: int | None = None
    """The offset after the last of the finished run (None: nothing finished yet)."""
    committed: int | None = None
    passed: deque[tuple[int, int]] = field(default_factory=deque)
    """(commit point, messages passed) for each move of the commit point since the last commit."""
    retrying_since: float | None = None
    _finished_prefix: int = 0
    """How many messages at the head of the batch in hand are finished."""
    _finished_later: set[int] = field(default_factory=set)
    """Offsets of the batch in hand finished past its finished prefix."""

    @property
    def position(self) -> TopicPartitionKey:
        """Returns (topic, partition)."""
        return (self.topic, self.partition)

    @property
    def busy(self) -> bool:
        """Tells whether a batch is in hand."""
        return self.in_hand is not None

    @property
    def ready(self) -> bool:
        """Tells whether the lane can start its next batch now."""
        waiting_for_older = self.after is not None and self.after.busy
        return (
            self.owned
            and not self.closed
            and not self.busy
            and not self.scheduled
            and bool(self.queue)
            and not waiting_for_older
        )

    def take(self, record: Inbound[Any]) -> bool:
        """Takes a fetched record in; False for one already taken (fetched again).

        After a rebalance that gives a partition back, the client fetches again from the
        committed offset: what the lane already holds, handled or not, is not taken twice.
        """
        if self.next_offset is not None and record.offset < self.next_offset:
            return False
        self.queue.append(record)
        self.next_offset = record.offset + 1
        return True

    def take_all(self, records: list[Inbound[Any]]) -> None:
        """Takes fetched records of the partition in, in offset order; skips those taken."""
        if self.next_offset is not None and records[0].offset < self.next_offset:
            records = [r for r in records if r.offset >= self.next_offset]
            if not records:
                return
        self.queue.extend(records)
        self.next_offset = records[-1].offset + 1

    def start_batch(self, size: int) -> list[Inbound[Any]]:
        """Takes the next batch (up to `size` messages) off the queue into hand."""
        queue = self.queue
        batch = [queue.popleft() for _ in range(min(size, len(queue)))]
        self.in_hand = batch
        self._finished_prefix = 0
        self._finished_later.clear()
        return batch

    def finish(self, records: Sequence[Record]) -> None:
        """Marks records of the batch in hand done (handled or dead-lettered)."""
        batch = self.in_hand
        if batch is None or not records:
            return
        done = self._finished_prefix
        end = done + len(records)
        if end <= len(batch) and records[0] is batch[done] and records[-1] is batch[end - 1]:
            # The usual case: the next messages, in order (a handled batch, or its head).
            done = end
        else:
            self._finished_later.update(r.offset for r in records)
        later = self._finished_later
        while done < len(batch) and batch[done].offset in later:
            later.discard(batch[done].offset)
            done += 1
        passed, self._finished_prefix = done - self._finished_prefix, done
        if passed:
            self.commit_point = batch[done - 1].offset + 1
            self.passed.append((self.commit_point, passed))

    def committable(self) -> int | None:
        """Returns the offset to commit, if past the last one committed."""
        point = self.commit_point
        if point is None or (self.committed is not None and point <= self.committed):
            return None
        return point

    def committed_at(self, offset: int) -> int:
        """Records a successful commit; returns how many messages it covered."""
        self.committed = offset
        covered = 0
        while self.passed and self.passed[0][0] <= offset:
            covered += self.passed.popleft()[1]
        return covered
