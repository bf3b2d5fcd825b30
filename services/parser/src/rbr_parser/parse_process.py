"""Parsing in a second process: raw chunks go in, batches of `logs` rows come out.

Parsing is pure Python and takes a core; encoding and loading the batches before it run
meanwhile in the service's process, so an object goes in about as fast as the slowest of
them. The process is started on first use and replaced after any failure (a half-parsed
object is never resumed in it).
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections import Counter
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any
from zoneinfo import ZoneInfo

from rbr_parser import formats
from rbr_parser.formats import ParseContext
from rbr_parser.lines import iter_lines
from rbr_parser.objects import decompressed
from rbr_parser.records import Record, RecordReader
from rbr_runtime.kafka import PermanentError

log = logging.getLogger(__name__)

MAX_LOG_SIZE = 2**31 - 1
_END = b""
"""Sent after an object's last chunk (the feeder never sends an empty chunk)."""

RowBatch = list[dict[str, Any]]
"""Rows as dicts of the logs columns."""


class ParseProcessError(RuntimeError):
    """The parse process failed for a reason other than the object (retried as an outage)."""


@dataclass(frozen=True)
class ObjectJob:
    """What the parse process needs to turn one object into rows.

    Attributes:
        row_values: the columns every row of the object shares (bucket, source, created_at).
    """

    reference_time: datetime
    syslog_timezone: str
    max_line_bytes: int
    max_log_bytes: int
    batch_rows: int
    row_values: dict[str, Any]


@dataclass
class ObjectStats:
    """What parsing one object found."""

    records: int = 0
    rows_inserted: int = 0
    kinds: Counter[tuple[str, str]] = field(default_factory=Counter)
    first_event_at: datetime | None = None
    last_event_at: datetime | None = None
    record_errors: int = 0
    """Records a format's code failed on (kept as unparsed)."""

    def add(self, fields: dict[str, Any]) -> None:
        """Counts one parsed record (as little as can be: it runs for every record)."""
        self.records += 1
        self.kinds[fields["log_format"], fields["event_type"]] += 1
        moment = fields["event_time"]
        if moment is not None:
            if self.first_event_at is None or moment < self.first_event_at:
                self.first_event_at = moment
            if self.last_event_at is None or moment > self.last_event_at:
                self.last_event_at = moment

    @property
    def event_counts(self) -> Counter[str]:
        """Returns the records per event type."""
        counts: Counter[str] = Counter()
        for (_, event_type), count in self.kinds.items():
            counts[event_type] += count
        return counts

    @property
    def unparsed(self) -> int:
        """Returns how many records no format recognised."""
        return self.event_counts[formats.UNPARSED]


def object_rows(
    job: ObjectJob, raw_chunks: Iterator[bytes], stats: ObjectStats
) -> Iterator[tuple[bool, RowBatch]]:
    """Yields the rows of an object's raw (possibly gzipped) bytes, batch by batch.

    Yields:
        (last, batch): every full batch as soon as it is (last False), then the rest, maybe
        none (last True): the service writes that one once the object is wholly read.
    """
    context = ParseContext(
        reference_time=job.reference_time, syslog_timezone=ZoneInfo(job.syslog_timezone)
    )
    reader = RecordReader(
        context, max_record_chars=job.max_line_bytes, max_raw_bytes=job.max_log_bytes
    )
    lines = iter_lines(decompressed(raw_chunks), job.max_line_bytes)
    batch: list[dict[str, Any]] = []
    for record_no, record in enumerate(reader.records(lines)):
        batch.append(_row(job.row_values, record_no, record))
        stats.add(record.fields)
        if len(batch) >= job.batch_rows:
            yield False, batch
            batch = []
    stats.record_errors = reader.errors
    yield True, batch


def _row(shared: dict[str, Any], record_no: int, record: Record) -> dict[str, Any]:
    row = record.fields
    row.update(shared)
    row["log"] = record.raw
    row["log_size"] = min(record.size, MAX_LOG_SIZE)
    row["record_no"] = record_no
    return row


def _serve(jobs: Connection, results: Connection) -> None:
    """The parse process: parses the objects sent to it, one after another, until EOF."""
    while True:
        try:
            job = jobs.recv()
        except EOFError:
            return
        stats = ObjectStats()
        try:
            for batch in object_rows(job, _received_chunks(jobs), stats):
                results.send(("rows", batch))
        except Exception as error:  # noqa: BLE001 - reported; the service replaces the process
            results.send(("error", (isinstance(error, PermanentError), str(error))))
            return
        results.send(("done", stats))


def _received_chunks(jobs: Connection) -> Iterator[bytes]:
    while (chunk := jobs.recv_bytes()) != _END:
        yield chunk


class ParseProcess:
    """The service's side of the parse process."""

    def __init__(self) -> None:
        self._process: BaseProcess | None = None
        self._jobs: Connection | None = None
        self._results: Connection | None = None

    def parse(
        self, job: ObjectJob, raw_chunks: Iterator[bytes], stats: ObjectStats
    ) -> Generator[tuple[bool, RowBatch], None, None]:
        """Yields the object's row batches as the process makes them; fills stats at the end.

        Yields as object_rows does: (last, batch).

        The raw chunks are read (and so hashed) on a thread of this process. Closing the
        iterator before its end (an error, a stop) replaces the process.

        Raises:
            PermanentError: the object cannot be parsed (e.g. broken gzip).
            ParseProcessError: the process failed otherwise.
        """
        jobs, results = self._started()
        jobs.send(job)
        feeder = _Feeder(jobs, raw_chunks)
        finished = False
        try:
            while True:
                kind, payload = results.recv()
                if kind == "rows":
                    yield payload
                    continue
                feeder.join()
                feeder.raise_error()  # the process failed for want of the object's bytes
                if kind == "error":
                    permanent, reason = payload
                    raise PermanentError(reason) if permanent else ParseProcessError(reason)
                finished = True
                _copy_stats(payload, stats)
                return
        except EOFError:
            raise ParseProcessError("the parse process ended unexpectedly") from None
        finally:
            if not finished:
                self._terminate()
                feeder.join()
                self._close()

    def _started(self) -> tuple[Connection, Connection]:
        if self._process is not None and self._process.is_alive() and self._jobs and self._results:
            return self._jobs, self._results
        self.stop()
        context = multiprocessing.get_context("spawn")
        child_jobs, self._jobs = context.Pipe(duplex=False)
        self._results, child_results = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_serve, args=(child_jobs, child_results), name="rbr-parse", daemon=True
        )
        self._process.start()
        child_jobs.close()
        child_results.close()
        return self._jobs, self._results

    def stop(self) -> None:
        """Ends the process (a new one starts on the next object)."""
        self._terminate()
        self._close()

    def _terminate(self) -> None:
        if self._process is None:
            return
        if self._process.pid is not None:  # started
            self._process.terminate()
            self._process.join(timeout=10)
        self._process = None

    def _close(self) -> None:
        for connection in (self._jobs, self._results):
            if connection is not None:
                connection.close()
        self._jobs = self._results = None


class ProcessPool:
    """Parse processes for objects parsed at once: each caller takes one, then gives it back."""

    def __init__(self) -> None:
        self._idle: list[ParseProcess] = []
        self._all: list[ParseProcess] = []
        self._lock = threading.Lock()

    @contextmanager
    def taken(self) -> Iterator[ParseProcess]:
        """Lends a parse process (started on first use) for one object."""
        with self._lock:
            if self._idle:
                process = self._idle.pop()
            else:
                process = ParseProcess()
                self._all.append(process)
        try:
            yield process
        finally:
            with self._lock:
                self._idle.append(process)

    def stop(self) -> None:
        """Ends every process."""
        with self._lock:
            for process in self._all:
                process.stop()


def _copy_stats(source: ObjectStats, target: ObjectStats) -> None:
    target.records = source.records
    target.kinds = source.kinds
    target.first_event_at = source.first_event_at
    target.last_event_at = source.last_event_at
    target.record_errors = source.record_errors


class _Feeder:
    """Sends an object's raw chunks to the parse process from a thread of its own.

    The pipe bounds what is in flight: reading waits while the process is busy. An error
    reading the object is kept and raised by join().
    """

    def __init__(self, jobs: Connection, raw_chunks: Iterator[bytes]) -> None:
        self._jobs = jobs
        self._chunks = raw_chunks
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="parser-feeder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for chunk in self._chunks:
                if chunk and not self._sent(chunk):
                    return
            self._sent(_END)
        except Exception as error:  # noqa: BLE001 - raised on the service's thread
            self._error = error
            # The process, waiting for bytes that will not come, fails and says so.
            self._jobs.close()
        finally:
            if isinstance(self._chunks, Generator):
                self._chunks.close()  # the object's stream, when the parse stopped early

    def _sent(self, data: bytes) -> bool:
        """Sends data; False if the process was stopped (the parse is abandoned anyway)."""
        try:
            self._jobs.send_bytes(data)
        except (OSError, ValueError):
            return False
        return True

    def join(self) -> None:
        """Waits for the thread."""
        self._thread.join()

    def raise_error(self) -> None:
        """Raises what reading the object raised, if anything."""
        if self._error is not None:
            raise self._error
