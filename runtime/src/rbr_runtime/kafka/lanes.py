"""One lane per assigned partition: messages fetched ahead, the batch in hand, the commit point.

Pure bookkeeping, no broker: the consumer runner holds one lock around every call.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from rbr_runtime.kafka.messages import Record, TopicPartitionKey


class OffsetTracker:
    """The offsets of one partition in hand, and how far it is safe to commit.

    Offsets are taken in increasing order and may finish in any order. The commit point moves
    only over a run of finished offsets: it never passes one still in hand, so a crash can
    lose nothing (arroyo commits the same way).
    """

    def __init__(self) -> None:
        self._finished: OrderedDict[int, bool] = OrderedDict()
        self.position: int | None = None
        """The offset after the last one of the finished run (None: nothing finished yet)."""

    def __len__(self) -> int:
        return len(self._finished)

    def take(self, offset: int) -> None:
        """Records an offset taken in (in increasing order)."""
        self._finished[offset] = False

    def finish(self, offset: int) -> None:
        """Records that an offset was handled (or dead-lettered); unknown offsets are ignored."""
        if offset in self._finished:
            self._finished[offset] = True

    def advance(self) -> list[int]:
        """Moves the commit point over the finished run; returns the offsets it passed."""
        passed = []
        while self._finished:
            offset, finished = next(iter(self._finished.items()))
            if not finished:
                break
            self._finished.popitem(last=False)
            self.position = offset + 1
            passed.append(offset)
        return passed


@dataclass(eq=False)
class Lane:
    """One partition of the assignment, handled in order: at most one batch in hand."""

    topic: str
    partition: int
    after: Lane | None = None
    """An older lane of the same partition whose batch is still in hand: this one waits."""
    queue: deque[Record] = field(default_factory=deque)
    tracker: OffsetTracker = field(default_factory=OffsetTracker)
    owned: bool = True
    """False between a revoke and the assignment that gives the partition back."""
    closed: bool = False
    """The partition went to another member: nothing more of it is handled or committed."""
    in_hand: list[Record] | None = None
    handler_thread: Any = None
    scheduled: bool = False
    paused: bool = False
    next_offset: int | None = None
    """The offset after the last message taken in: anything below it is a duplicate."""
    committed: int | None = None
    passed: list[int] = field(default_factory=list)
    """Offsets the commit point moved over since the last commit."""
    retrying_since: float | None = None
    started_at: float = field(default_factory=time.monotonic)

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

    def take(self, record: Record) -> bool:
        """Takes a fetched record in; False for one already taken (fetched again).

        After a rebalance that gives a partition back, the client fetches again from the
        committed offset: what the lane already holds, handled or not, is not taken twice.
        """
        if self.next_offset is not None and record.offset < self.next_offset:
            return False
        self.queue.append(record)
        self.tracker.take(record.offset)
        self.next_offset = record.offset + 1
        return True

    def start_batch(self, size: int) -> list[Record]:
        """Takes the next batch (up to `size` messages) off the queue into hand."""
        batch = [self.queue.popleft() for _ in range(min(size, len(self.queue)))]
        self.in_hand = batch
        return batch

    def finish(self, records: list[Record]) -> None:
        """Marks records done (handled or dead-lettered)."""
        for record in records:
            self.tracker.finish(record.offset)
        self.passed.extend(self.tracker.advance())

    def committable(self) -> int | None:
        """Returns the offset to commit, if past the last one committed."""
        position = self.tracker.position
        if position is None or (self.committed is not None and position <= self.committed):
            return None
        return position

    def committed_at(self, offset: int) -> int:
        """Records a successful commit; returns how many messages it covered."""
        self.committed = offset
        passed = sum(1 for o in self.passed if o < offset)
        self.passed = [o for o in self.passed if o >= offset]
        return passed
