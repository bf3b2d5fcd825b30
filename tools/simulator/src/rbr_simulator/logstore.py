"""A bucket's log: numbered entries and the pull cursor protocol of `GET /extract_logs`.

Every entry gets the next sequence number; a pull returns the entries after a cursor and
names the last one it included, so a client whose transfer failed can ask again. The rules
(no cursor, `since`, a cursor beyond the newest entry) are in the simulator's README,
"Endpoints". Entries are log records or bulk logs; a bulk log streams many records.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from rbr_simulator.generator import LogGenerator
from rbr_simulator.records import LogMix, LogRecord


@dataclass(frozen=True, slots=True)
class BulkLog:
    """A large log entry whose records are generated while it is streamed.

    Streaming it again yields the same bytes (the records come from a seeded generator).

    Attributes:
        seq: The entry's sequence number.
        size_bytes: How many bytes it streams (whole records, so up to one record more).
        seed: Seed of its records.
        mix: Formats and hostile content of its records.
        sensor: Honeypot name written into its records.
        honeypot_ip: The bucket's address written into its records.
        start: Timestamp of its first record.
    """

    seq: int
    size_bytes: int
    seed: int
    mix: LogMix
    sensor: str
    honeypot_ip: str
    start: datetime

    def chunks(self, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        """Yields the entry's bytes in chunks of whole records."""
        generator = LogGenerator(
            self.seed,
            mix=self.mix,
            sensor=self.sensor,
            honeypot_ip=self.honeypot_ip,
            start=self.start,
        )
        return generator.iter_bytes(self.size_bytes, chunk_size)


Entry = LogRecord | BulkLog


@dataclass(frozen=True, slots=True)
class Pull:
    """What one pull returns.

    Attributes:
        entries: The entries to send, oldest first.
        cursor: Sequence number of the last entry included (the `X-Log-Cursor` header).
        reset: True when the client's cursor was beyond the newest entry.
    """

    entries: Sequence[Entry]
    cursor: int
    reset: bool = False

    @property
    def first_seq(self) -> int | None:
        """Returns the sequence number of the first entry included, if any."""
        return self.entries[0].seq if self.entries else None

    @property
    def known_size(self) -> int | None:
        """Returns the body size in bytes, or None when a bulk log makes it unknown upfront."""
        size = 0
        for entry in self.entries:
            if isinstance(entry, BulkLog):
                return None
            size += len(entry.data)
        return size


class LogStore:
    """The numbered entries of one bucket's log and its pull cursor.

    Attributes:
        last_seq: Sequence number of the newest entry (0 when none was ever written).
        delivered: Sequence number up to which entries were handed out (by a pull or an S3
            flush).
    """

    def __init__(self, max_retained: int = 200_000) -> None:
        """Creates an empty log.

        Args:
            max_retained: How many entries to keep at most; the oldest are dropped beyond it,
                like a honeypot whose log rotation deletes files nobody collected.
        """
        self._entries: deque[Entry] = deque()
        self._max_retained = max_retained
        self.last_seq = 0
        self.delivered = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def first_retained_seq(self) -> int:
        """Returns the sequence number of the oldest retained entry (next one when empty)."""
        return self._entries[0].seq if self._entries else self.last_seq + 1

    def append(self, records: Sequence[LogRecord]) -> list[LogRecord]:
        """Stores records, numbering them; returns them with their sequence numbers."""
        numbered = []
        for record in records:
            self.last_seq += 1
            numbered.append(dataclasses.replace(record, seq=self.last_seq))
        self._entries.extend(numbered)
        self._enforce_retention()
        return numbered

    def append_bulk(
        self,
        size_bytes: int,
        *,
        seed: int,
        mix: LogMix,
        sensor: str,
        honeypot_ip: str,
        start: datetime,
    ) -> BulkLog:
        """Stores a bulk log entry of about `size_bytes` and returns it."""
        self.last_seq += 1
        bulk = BulkLog(
            seq=self.last_seq,
            size_bytes=size_bytes,
            seed=seed,
            mix=mix,
            sensor=sensor,
            honeypot_ip=honeypot_ip,
            start=start,
        )
        self._entries.append(bulk)
        self._enforce_retention()
        return bulk

    def pull(self, since: int | None = None) -> Pull:
        """Returns the entries a `GET /extract_logs[?since=...]` answers with.

        Args:
            since: The client's cursor, or None for "since the previous pull".

        Raises:
            ValueError: If `since` is negative.
        """
        if since is not None and since < 0:
            raise ValueError("since must be >= 0")
        reset = since is not None and since > self.last_seq
        if since is None:
            start = self.delivered
        elif reset:
            start = self.first_retained_seq - 1
        else:
            start = since
            self.forget_through(since)
        entries = self.after(start)
        cursor = entries[-1].seq if entries else start
        self.delivered = max(self.delivered, cursor) if not reset else cursor
        return Pull(entries=entries, cursor=cursor, reset=reset)

    def after(self, seq: int) -> list[Entry]:
        """Returns the retained entries with a sequence number above `seq`, oldest first."""
        first = self.first_retained_seq
        skip = max(0, seq - first + 1)
        # Sequence numbers are contiguous, so the position of `seq` is known without a search.
        return list(itertools.islice(self._entries, skip, None))

    def pending(self) -> list[Entry]:
        """Returns the entries not handed out yet."""
        return self.after(self.delivered)

    def mark_delivered(self, seq: int) -> None:
        """Records that the entries up to `seq` were handed out and need not be kept."""
        self.delivered = max(self.delivered, seq)
        self.forget_through(seq)

    def forget_through(self, seq: int) -> None:
        """Drops the retained entries with a sequence number up to `seq`."""
        while self._entries and self._entries[0].seq <= seq:
            self._entries.popleft()

    def _enforce_retention(self) -> None:
        while len(self._entries) > self._max_retained:
            self._entries.popleft()
            self.dropped += 1
