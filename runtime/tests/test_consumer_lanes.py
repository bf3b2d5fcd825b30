"""Lane bookkeeping without a broker: the commit point and fetching again after a rebalance."""

from __future__ import annotations

from rbr_runtime.kafka.lanes import Lane, OffsetTracker
from rbr_runtime.kafka.messages import Record


def record(offset: int) -> Record:
    return Record(topic="t", partition=0, offset=offset, key=b"k", value=b"v")


def test_the_commit_point_never_passes_an_offset_still_in_hand() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12, 13):
        tracker.take(offset)

    tracker.finish(12)
    tracker.finish(13)
    assert tracker.advance() == []
    assert tracker.position is None, "12 and 13 finished, but 10 is still in hand"

    tracker.finish(10)
    assert tracker.advance() == [10]
    assert tracker.position == 11

    tracker.finish(11)
    assert tracker.advance() == [11, 12, 13]
    assert tracker.position == 14
    assert len(tracker) == 0


def test_offsets_need_not_be_contiguous() -> None:
    """Compaction and transaction markers leave gaps: the commit point jumps them."""
    tracker = OffsetTracker()
    for offset in (3, 7, 20):
        tracker.take(offset)
        tracker.finish(offset)
    assert tracker.advance() == [3, 7, 20]
    assert tracker.position == 21


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
