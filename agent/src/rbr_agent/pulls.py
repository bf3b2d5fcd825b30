"""`GET /extract_logs`: what one pull sends, and sending it with bounded memory.

A pull is planned under the lock (for each log file, oldest first, from its confirmed offset
to its last complete line, within the pull's byte budget), recorded in the ledger, then
streamed a chunk at a time. A file that changed under the transfer cuts it short, and the
registry asks again. What counts as complete: agent/README.md, "How every line goes once".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from io import BufferedIOBase
from pathlib import Path

from rbr_agent import logdir
from rbr_agent.ledger import Confirmation, FileRecord, Ledger
from rbr_agent.logdir import LogFile

log = logging.getLogger(__name__)

FORGET_AFTER = 7 * 24 * 3600.0


class Busy(Exception):
    """Another pull is being served."""


class TransferCut(Exception):
    """A planned file changed under the transfer; the answer must end incomplete."""


@dataclass(frozen=True)
class Segment:
    """Bytes [start, end) of one log file's content."""

    fingerprint: str
    path: Path
    codec: str | None
    start: int
    end: int
    add_newline: bool = False

    @property
    def size(self) -> int:
        """Returns how many content bytes the segment sends."""
        return self.end - self.start


@dataclass(frozen=True)
class Pull:
    """What one answer sends: its cursor, whether the cursor was reset, and the segments."""

    cursor: str
    reset: bool
    segments: list[Segment]

    @property
    def size(self) -> int:
        """Returns the content bytes the segments send."""
        return sum(s.size for s in self.segments)


@dataclass(frozen=True)
class PullSettings:
    """How pulls are made."""

    directory: Path
    patterns: tuple[str, ...]
    max_pull_bytes: int = 512 * 1024 * 1024
    partial_line_after: float = 3600.0
    chunk_bytes: int = 256 * 1024


class LogService:
    """Serves the pulls of one log directory (one at a time) from the ledger."""

    def __init__(self, settings: PullSettings, ledger: Ledger) -> None:
        """Prepares the service; nothing is read before the first pull."""
        self.settings = settings
        self.ledger = ledger
        self._lock = threading.Lock()

    # -- planning -------------------------------------------------------------------------------

    def begin(self, since: str | None, *, wait: float = 5.0) -> Pull:
        """Confirms `since`, plans the next pull and records it; the caller streams `body()`.

        Raises:
            Busy: another pull holds the lock for longer than `wait` seconds.
            BadCursor: `since` is malformed.
            OSError: the log directory or the ledger cannot be read or written.
        """
        if not self._lock.acquire(timeout=wait):
            raise Busy
        try:
            return self._begin(since)
        finally:
            self._lock.release()

    def _begin(self, since: str | None) -> Pull:
        ledger = self.ledger
        confirmation = ledger.confirm(since)
        now = time.time()
        files = logdir.scan(self.settings.directory, self.settings.patterns)
        groups = self._groups(files, now)
        segments = self._plan(groups, now)
        ledger.forget(set(groups), now, FORGET_AFTER)
        if segments:
            ends = {
                s.fingerprint: [ledger.files[s.fingerprint].generation, s.end] for s in segments
            }
            cursor = ledger.issue(ends)
        else:
            cursor = ledger.cursor()
        ledger.save()
        pull = Pull(cursor, confirmation is Confirmation.OTHER_LEDGER, segments)
        log.info(
            "pull %s: %d file(s), %d bytes (since %s: %s)",
            cursor,
            len(segments),
            pull.size,
            since,
            confirmation.value,
        )
        return pull

    def _groups(self, files: list[LogFile], now: float) -> dict[str, list[LogFile]]:
        """Returns the files by content (fingerprint), the preferred copy first.

        Files new to the ledger get their place in the order, oldest (by mtime) first.
        """
        groups: dict[str, list[LogFile]] = {}
        for log_file in sorted(files, key=lambda f: (f.mtime_ns, f.path.name)):
            groups.setdefault(log_file.fingerprint, []).append(log_file)
        for fingerprint, copies in groups.items():
            # A plain file (still growing, perhaps) before an archive; the longest first.
            copies.sort(key=lambda f: (f.compressed, -f.size))
            record = self.ledger.record(fingerprint)
            record.name, record.seen = copies[0].path.name, now
        return groups

    def _plan(self, groups: dict[str, list[LogFile]], now: float) -> list[Segment]:
        budget = self.settings.max_pull_bytes
        segments: list[Segment] = []
        for fingerprint in sorted(groups, key=lambda fp: self.ledger.files[fp].seq):
            if budget <= 0:
                break
            record = self.ledger.files[fingerprint]
            segment = self._segment(fingerprint, record, groups[fingerprint], budget, now)
            if segment is not None and segment.size > 0:
                segments.append(segment)
                budget -= segment.size
        return segments

    def _segment(
        self,
        fingerprint: str,
        record: FileRecord,
        copies: list[LogFile],
        budget: int,
        now: float,
    ) -> Segment | None:
        plain = [c for c in copies if not c.compressed]
        if plain:
            return self._plain_segment(fingerprint, record, plain[0], budget, now)
        for archive in copies:
            segment = self._archive_segment(fingerprint, record, archive)
            if segment is not None:
                return segment
        return None

    def _plain_segment(
        self, fingerprint: str, record: FileRecord, log_file: LogFile, budget: int, now: float
    ) -> Segment | None:
        if log_file.size < record.acked:
            log.warning(
                "%s is shorter (%d bytes) than what was sent of it (%d): it was truncated "
                "and begins again; sending it from its start",
                log_file.path.name,
                log_file.size,
                record.acked,
            )
            record.generation += 1
            record.acked = 0
        start = record.acked
        if start >= log_file.size:
            return None
        limit = min(log_file.size, start + budget)
        end = logdir.last_line_end(log_file.path, start, limit)
        if end is None and limit < log_file.size:
            # One line longer than the whole budget: send it alone.
            end = logdir.next_line_end(log_file.path, limit, log_file.size)
        idle = now - log_file.mtime_ns / 1e9 > self.settings.partial_line_after
        if limit == log_file.size and (end or start) < log_file.size and idle:
            return Segment(fingerprint, log_file.path, None, start, log_file.size, True)
        if end is None:
            return None
        return Segment(fingerprint, log_file.path, None, start, end)

    def _archive_segment(
        self, fingerprint: str, record: FileRecord, archive: LogFile
    ) -> Segment | None:
        measured = record.archive
        if measured is None or measured[:2] != list(archive.signature):
            content = logdir.measure(archive.path, archive.codec)
            if content is None:
                return None
            measured = [*archive.signature, content.length, int(content.ends_with_newline)]
            record.archive = measured
        length, ends_with_newline = measured[2], bool(measured[3])
        if length <= record.acked:
            return None
        return Segment(
            fingerprint,
            archive.path,
            archive.codec,
            record.acked,
            length,
            add_newline=not ends_with_newline,
        )

    # -- streaming ------------------------------------------------------------------------------

    def body(self, pull: Pull) -> Iterator[bytes]:
        """Yields the pull's bytes, a chunk at a time.

        Raises:
            TransferCut: a planned file no longer holds the planned bytes.
        """
        for segment in pull.segments:
            yield from self._segment_bytes(segment)

    def _segment_bytes(self, segment: Segment) -> Iterator[bytes]:
        handle, codec = self._open(segment)
        with handle:
            if codec is None:
                handle.seek(segment.start)
            else:
                _skip(handle, segment.start, self.settings.chunk_bytes)
            remaining = segment.size
            while remaining > 0:
                chunk = handle.read(min(self.settings.chunk_bytes, remaining))
                if not chunk:
                    raise TransferCut(f"{segment.path.name} ended before the planned offset")
                remaining -= len(chunk)
                yield chunk
        if segment.add_newline:
            yield b"\n"

    def _open(self, segment: Segment) -> tuple[BufferedIOBase, str | None]:
        """Opens the segment's file, or the file its content moved to since it was planned."""
        for path, codec in self._candidates(segment):
            try:
                handle = logdir.open_content(path, codec)
            except OSError:
                continue
            try:
                head = logdir.read_exactly(handle, logdir.FIRST_LINE_MAX)
            except logdir.DECOMPRESSION_ERRORS:
                handle.close()
                continue
            if logdir.fingerprint_of(head) == segment.fingerprint:
                if codec is None:
                    return handle, codec
                handle.close()
                return logdir.open_content(path, codec), codec
            handle.close()
        raise TransferCut(f"{segment.path.name} is gone")

    def _candidates(self, segment: Segment) -> Iterator[tuple[Path, str | None]]:
        yield segment.path, segment.codec
        # Renamed since the plan (a rotation in between): look for its content elsewhere.
        moved = [
            f
            for f in logdir.scan(self.settings.directory, self.settings.patterns)
            if f.fingerprint == segment.fingerprint and f.path != segment.path
        ]
        for log_file in sorted(moved, key=lambda f: (f.compressed, -f.size)):
            if segment.codec is None and log_file.codec is None and log_file.size < segment.end:
                continue
            log.info("%s moved to %s during the transfer", segment.path.name, log_file.path.name)
            yield log_file.path, log_file.codec


def _skip(handle: BufferedIOBase, count: int, chunk: int) -> None:
    """Reads and drops `count` bytes of decompressed content."""
    remaining = count
    while remaining > 0:
        data = handle.read(min(chunk, remaining))
        if not data:
            raise TransferCut("an archive ended before the planned offset")
        remaining -= len(data)
