"""The pull cursor protocol of a bucket's log, without any server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rbr_simulator.generator import LogGenerator
from rbr_simulator.logstore import BulkLog, LogStore
from rbr_simulator.records import LogMix, LogRecord

START = datetime(2025, 10, 28, 19, tzinfo=UTC)


def records(count: int, seed: int = 1) -> list[LogRecord]:
    return LogGenerator(seed=seed, start=START).generate(count)


def seqs(entries: object) -> list[int]:
    return [entry.seq for entry in entries]  # type: ignore[attr-defined]


def test_append_numbers_records_from_one() -> None:
    store = LogStore()

    first = store.append(records(3))
    second = store.append(records(2, seed=2))

    assert seqs(first) == [1, 2, 3]
    assert seqs(second) == [4, 5]
    assert store.last_seq == 5


def test_pull_without_since_returns_what_is_new_since_the_previous_pull() -> None:
    store = LogStore()
    store.append(records(3))

    first = store.pull()
    empty = store.pull()
    store.append(records(2, seed=2))
    second = store.pull()

    assert (seqs(first.entries), first.cursor, first.first_seq) == ([1, 2, 3], 3, 1)
    assert (seqs(empty.entries), empty.cursor, empty.first_seq) == ([], 3, None)
    assert (seqs(second.entries), second.cursor) == ([4, 5], 5)


def test_pull_with_an_old_cursor_returns_the_same_records_again() -> None:
    store = LogStore()
    store.append(records(3))
    store.pull()
    store.append(records(2, seed=2))
    lost = store.pull()  # Pretend this transfer failed.

    retry = store.pull(since=3)

    assert retry.entries == lost.entries
    assert retry.cursor == 5


def test_since_forgets_what_the_client_confirmed() -> None:
    store = LogStore()
    store.append(records(5))

    store.pull(since=3)

    assert store.first_retained_seq == 4
    assert len(store) == 2
    # Asking from before the forgotten part returns what is left; the client sees the gap.
    gap = store.pull(since=1)
    assert (seqs(gap.entries), gap.first_seq, gap.reset) == ([4, 5], 4, False)


def test_since_at_the_newest_record_is_empty_with_the_same_cursor() -> None:
    store = LogStore()
    store.append(records(4))

    pull = store.pull(since=4)

    assert (list(pull.entries), pull.cursor, pull.reset) == ([], 4, False)
    assert len(store) == 0


def test_a_cursor_from_the_future_returns_everything_and_flags_a_reset() -> None:
    store = LogStore()
    store.append(records(3))

    pull = store.pull(since=500)

    assert (seqs(pull.entries), pull.cursor, pull.reset) == ([1, 2, 3], 3, True)
    assert seqs(store.pull().entries) == []


def test_negative_cursor_is_rejected() -> None:
    with pytest.raises(ValueError, match="since"):
        LogStore().pull(since=-1)


def test_retention_drops_the_oldest_entries() -> None:
    store = LogStore(max_retained=3)

    store.append(records(5))

    assert seqs(store.pending()) == [3, 4, 5]
    assert store.dropped == 2


def test_mark_delivered_moves_the_pending_mark() -> None:
    store = LogStore()
    store.append(records(4))

    store.mark_delivered(2)

    assert seqs(store.pending()) == [3, 4]
    assert store.first_retained_seq == 3


def test_bulk_entry_takes_one_sequence_number_and_hides_the_size() -> None:
    store = LogStore()
    store.append(records(1))
    bulk = store.append_bulk(
        10_000, seed=1, mix=LogMix(), sensor="s", honeypot_ip="127.0.0.2", start=START
    )
    store.append(records(1, seed=3))

    pull = store.pull()

    assert isinstance(bulk, BulkLog)
    assert seqs(pull.entries) == [1, 2, 3]
    assert pull.known_size is None
    assert store.pull(since=2).known_size == len(pull.entries[2].data)  # type: ignore[union-attr]
