"""Parsing one raw log object into `logs` rows, then announcing it on `logs.parsed`.

For each `logs.extracted` event: the object is streamed from S3 (never held whole) to a
parse process that cuts it into records and parses them, while this process writes the
batch before (LOAD DATA on MySQL). Rows are keyed by (object sha256, bucket, record number)
and the object's one created_at, so a redelivered or replayed event inserts nothing twice,
and two buckets sending identical objects each get their rows. `logs.parsed` follows, with an
id derived from the bucket and the object, and only then does the runner commit the offset.

A missing object or one whose content is not what the event says can never be parsed: that
event is rejected (it goes to the DLQ with the reason; the other events of its batch are
parsed as usual). Anything else, e.g. the database or S3 being down, is an outage: the
runner retries the batch until it succeeds.

A crash or a rebalance between an object's last write and its offset's commit brings the
event back: the object is parsed again, inserts nothing (its rows are in), and logs.parsed
goes out again with the same id (at-least-once), as after a replay (`rbr replay`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter as MetricCounter
from prometheus_client import Histogram

from rbr_parser.objects import OpenedObject, hash_object, head_object, open_object
from rbr_parser.parse_process import ObjectJob, ObjectStats, ProcessPool, RowBatch
from rbr_parser.records import RECORD_ERRORS
from rbr_parser.settings import ParserSettings
from rbr_parser.store import LogRows, rows_in
from rbr_runtime.jsonlog import log_context
from rbr_runtime.kafka import EventProducer, Inbound, PermanentError, Rejection
from rbr_schemas import LOGS_PARSED, LogsExtracted, LogsParsed, utcnow

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

PARSED_EVENT_NAMESPACE = uuid.UUID("5b0f6f0e-2f4c-4a57-9a3e-6d1f0c2b7a91")

RECORDS = MetricCounter(
    "rbr_parser_records_total", "Records parsed, by format and event type.", ["format", "type"]
)
ROWS_INSERTED = MetricCounter("rbr_parser_rows_inserted_total", "New rows written to logs.")
DUPLICATES = MetricCounter(
    "rbr_parser_duplicates_total", "Records already in logs (redelivery or replay)."
)
OBJECTS = MetricCounter(
    "rbr_parser_objects_total",
    "Raw objects handled, by outcome (parsed, sha256_mismatch).",
    ["outcome"],
)
BYTES = MetricCounter("rbr_parser_bytes_total", "Raw object bytes read.")
OBJECT_SECONDS = Histogram(
    "rbr_parser_object_seconds",
    "Time to parse one raw object.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)


class ParseInterrupted(Exception):
    """The service is stopping: the object is left for the next run (nothing is lost)."""


def parsed_event_id(extracted: LogsExtracted) -> str:
    """Returns the id of the logs.parsed event of an object: the same on every re-parse.

    The bucket is part of it: two buckets' copies of one source (the same object id and
    content) are two events. A bucket name holds no ':'.
    """
    identity = f"{extracted.name}:{extracted.object_id}:{extracted.sha256}"
    return str(uuid.uuid5(PARSED_EVENT_NAMESPACE, identity))


class ObjectParser:
    """The `logs.extracted` handler: parses each object of a batch, in order."""

    def __init__(
        self,
        settings: ParserSettings,
        *,
        rows: LogRows,
        s3: S3Client,
        producer: EventProducer,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        """Prepares the handler.

        Args:
            settings: the parser's settings (batch size, record limits, zones).
            rows: where rows go.
            s3: a client for the registry's bucket.
            producer: sends logs.parsed.
            stopping: tells whether the service is shutting down; a long object is then
                abandoned between two batches (its next run skips what was inserted).
        """
        self._settings = settings
        self._rows = rows
        self._s3 = s3
        self._producer = producer
        self._stopping = stopping
        # Parsing runs there while this process loads the batch before; one process per
        # object parsed at once (the runner's lanes parse objects in parallel).
        self._parse_processes = ProcessPool()
        # One writer: batches of an object are loaded in order while the next is encoded.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="parser-writer")

    def __call__(self, batch: Sequence[Inbound[LogsExtracted]]) -> list[Rejection]:
        """Handles a batch of logs.extracted events; returns those that can never be parsed."""
        rejections = []
        for message in batch:
            extracted = message.data
            event_id = message.event.id if message.event else None
            with log_context(
                bucket=extracted.name, object_id=extracted.object_id, event_id=event_id
            ):
                try:
                    self.parse(extracted)
                except PermanentError as error:
                    rejections.append(Rejection(message, str(error), error.counts_toward_cap))
        return rejections

    def parse(self, extracted: LogsExtracted) -> LogsParsed:
        """Parses one raw object into logs rows and announces it on logs.parsed.

        Raises:
            PermanentError: the object is missing, or its content is not the one the event
                describes.
            ParseInterrupted: the service is stopping.
        """
        started = time.monotonic()
        self._verify_before(extracted)
        opened = open_object(self._s3, extracted.s3_bucket, extracted.s3_key)
        parsed = self._insert_records(extracted, opened)
        self._announce(extracted, parsed)
        OBJECTS.labels("parsed").inc()
        OBJECT_SECONDS.observe(time.monotonic() - started)
        log.info(
            "parsed %s: %d records, %d new rows, %d already present, %d unparsed",
            extracted.s3_key,
            parsed.records,
            parsed.rows_inserted,
            parsed.duplicates_skipped,
            parsed.unparsed_records,
            extra={"seconds": round(time.monotonic() - started, 3)},
        )
        return parsed

    def _announce(self, extracted: LogsExtracted, parsed: LogsParsed) -> None:
        self._producer.send(
            LOGS_PARSED,
            extracted.name,
            parsed,
            subject=extracted.name,
            event_id=parsed_event_id(extracted),
        )

    def _verify_before(self, extracted: LogsExtracted) -> None:
        """Checks the object is the one the event describes before a row is written.

        The log-extractor stores sha256 and size in the object's metadata, so the check is
        one request; an object without them is hashed in a first pass.
        """
        size, metadata = head_object(self._s3, extracted.s3_bucket, extracted.s3_key)
        stored_sha = metadata.get("sha256")
        if stored_sha is None:
            stored_sha, size = hash_object(self._s3, extracted.s3_bucket, extracted.s3_key)
        if size != extracted.size_bytes or stored_sha != extracted.sha256:
            OBJECTS.labels("sha256_mismatch").inc()
            raise PermanentError(
                f"s3://{extracted.s3_bucket}/{extracted.s3_key} is not the object the event "
                f"describes: sha256 {stored_sha} and {size} bytes, the event says "
                f"{extracted.sha256} and {extracted.size_bytes} bytes"
            )

    def _insert_records(self, extracted: LogsExtracted, opened: OpenedObject) -> LogsParsed:
        """Writes the object's rows, batch by batch, as the parse process makes them.

        The last rows wait for the whole object to be read and its sha256 checked.

        Returns:
            Its logs.parsed data.
        """
        stats = ObjectStats()
        job = self._job(extracted)
        held: RowBatch | None = None
        writes: deque[Future[int]] = deque()
        with self._parse_processes.taken() as process:
            batches = process.parse(job, opened.chunks(), stats)
            try:
                for last, batch in batches:
                    if last:
                        held = batch
                    else:
                        self._write(batch, stats, writes)
                self._collect(writes, stats, keep=0)
            finally:
                batches.close()  # an error or a stop: the parse process is replaced
                wait(writes)  # never leave a write running behind a failure
        self._check_read(extracted, opened)
        parsed = self._finish(extracted, held, stats)
        BYTES.inc(opened.bytes_read)
        for (log_format, event_type), count in stats.kinds.items():
            RECORDS.labels(log_format, event_type).inc(count)
        RECORD_ERRORS.inc(stats.record_errors)
        return parsed

    def _job(self, extracted: LogsExtracted) -> ObjectJob:
        # One moment for all the object's rows, the same on every parse of it (replays).
        created_at = self._rows.object_created_at(extracted.name, extracted.sha256, utcnow())
        return ObjectJob(
            reference_time=extracted.extracted_at,
            syslog_timezone=self._settings.syslog_timezone,
            max_line_bytes=self._settings.parser_max_line_bytes,
            max_log_bytes=self._settings.parser_max_log_bytes,
            batch_rows=self._settings.parser_insert_batch,
            row_values={
                "created_at": created_at,
                "name": extracted.name,
                "ip_address": extracted.ip_address,
                "source_key": extracted.s3_key,
                "source_sha256": extracted.sha256,
            },
        )

    @staticmethod
    def _check_read(extracted: LogsExtracted, opened: OpenedObject) -> None:
        """Refuses an object that changed while it was read (before its last rows go in)."""
        if opened.hexdigest == extracted.sha256:
            return
        OBJECTS.labels("sha256_mismatch").inc()
        raise PermanentError(
            f"s3://{extracted.s3_bucket}/{extracted.s3_key} changed while it was read: "
            f"sha256 {opened.hexdigest} is not the event's {extracted.sha256}"
        )

    def _finish(
        self, extracted: LogsExtracted, batch: RowBatch | None, stats: ObjectStats
    ) -> LogsParsed:
        """Writes the last rows; returns the object's logs.parsed data."""
        if self._stopping():
            raise ParseInterrupted("stopping; the object will be parsed again from where it was")
        if batch:
            stats.rows_inserted += self._insert(self._rows.prepared(batch))
        return self._summary(extracted, stats)

    @staticmethod
    def _summary(extracted: LogsExtracted, stats: ObjectStats) -> LogsParsed:
        return LogsParsed(
            object_id=extracted.object_id,
            name=extracted.name,
            s3_bucket=extracted.s3_bucket,
            s3_key=extracted.s3_key,
            sha256=extracted.sha256,
            records=stats.records,
            rows_inserted=stats.rows_inserted,
            duplicates_skipped=stats.records - stats.rows_inserted,
            unparsed_records=stats.unparsed,
            event_counts=dict(stats.event_counts),
            first_event_at=stats.first_event_at,
            last_event_at=stats.last_event_at,
            parsed_at=utcnow(),
        )

    def _write(self, batch: RowBatch, stats: ObjectStats, writes: deque[Future[int]]) -> None:
        """Encodes a batch here and hands it to the writer thread, which loads it meanwhile."""
        if self._stopping():
            raise ParseInterrupted("stopping; the object will be parsed again from where it was")
        writes.append(self._writer.submit(self._insert, self._rows.prepared(batch)))
        self._collect(writes, stats, keep=1)

    def _insert(self, batch: Sequence[dict[str, Any]] | bytes) -> int:
        inserted = self._rows.insert(batch)
        ROWS_INSERTED.inc(inserted)
        DUPLICATES.inc(rows_in(batch) - inserted)
        return inserted

    @staticmethod
    def _collect(writes: deque[Future[int]], stats: ObjectStats, keep: int) -> None:
        """Waits for the oldest writes until at most `keep` are in flight (errors raise)."""
        while len(writes) > keep:
            stats.rows_inserted += writes.popleft().result()

    def close(self) -> None:
        """Ends the parse processes and the writer thread."""
        self._parse_processes.stop()
        self._writer.shutdown(wait=True)
