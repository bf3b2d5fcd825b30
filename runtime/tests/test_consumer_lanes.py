"""Lane bookkeeping without a broker: the commit point and fetching again after a rebalance."""

from __future__ import annotations

from typing import Any

from rbr_runtime.kafka.lanes import Lane
from rbr_runtime.kafka.messages import Inbound


def record(offset: int) -> Inbound[Any]:
    return Inbound(topic="t", partition=0, offset=offset, key=b"k", value=b"v")


def lane_holding(offsets: list[int]) -> tuple[Lane, list[Inbound[Any]]]:
    lane = Lane("t", 0)
    lane.take_all([record(offset) for offset in offsets])
    return lane, lane.start_batch(len(offsets))


def test_the_commit_point_never_passes_an_offset_still_in_hand() -> None:
    lane, batch = lane_holding([10, 11, 12, 13])

    lane.finish(batch[2:])
    assert lane.committable() is None, "12 and 13 finished, but 10 is still in hand"

    lane.finish(batch[:1])
    assert lane.committable() == 11

    lane.finish(batch[1:2])
    assert lane.committable() == 14
    assert lane.committed_at(14) == 4


def test_offsets_need_not_be_contiguous() -> None:
    """Compaction and transaction markers leave gaps: the commit point jumps them."""
    lane, batch = lane_holding([3, 7, 20])
    for message in batch:
        lane.finish([message])
    assert lane.committable() == 21


def test_a_batch_without_its_undecodable_messages_finishes_around_them() -> None:
    """The handled messages of a batch are not contiguous when some were dead-lettered."""
    lane, batch = lane_holding([0, 1, 2, 3])
    lane.finish([batch[1]])  # dead-lettered first
    assert lane.committable() is None
    lane.finish([batch[0], batch[2], batch[3]])
    assert lane.committable() == 4
    assert lane.committed_at(4) == 4


def test_a_lane_commits_only_what_finished_and_counts_it_once() -> None:
    lane = Lane("t", 0)
    for offset in range(5):
        assert lane.take(record(offset))
    batch = lane.start_batch(3)
    assert [r.offset for r in batch] == [0, 1, 2]
    assert lane.busy
    assert not lane.ready

    lane.finish(batch[1:])
    assert lane.committable() is None
    lane.finish(batch[:1])
    assert lane.committable() == 3
    assert lane.committed_at(3) == 3
    assert lane.committable() is None


def test_messages_fetched_again_after_a_rebalance_are_not_taken_twice() -> None:
    lane = Lane("t", 0)
    for offset in range(4):
        lane.take(record(offset))
    lane.finish(lane.start_batch(2))
    lane.in_hand = None

    # The partition came straight back; the client fetches again from the committed offset.
    taken = [lane.take(record(offset)) for offset in range(6)]

    assert taken == [False, False, False, False, True, True]
    assert [r.offset for r in lane.queue] == [2, 3, 4, 5]


def test_a_lane_waits_for_the_older_lane_of_its_partition() -> None:
    older = Lane("t", 0)
    older.take(record(0))
    older.start_batch(1)
    newer = Lane("t", 0, after=older)
    newer.take(record(0))

    assert not newer.ready, "two batches of one partition would run at once"
    older.in_hand = None
    assert newer.ready
