"""Extracting one bucket's logs into the registry's bucket and announcing them.

Two ways in:

* HTTP: `GET {base}/extract_logs` with the bucket's token, streamed into S3. With a stored
  cursor the request carries `?since=<cursor>`, so records of a transfer that failed are
  sent again; a bucket without cursor support (the real rustbucket) sends what is new since
  its previous pull. The object, then (in one transaction) the new cursor together with the
  object's `logs.extracted` event, then the event itself: once the cursor has moved past
  some records, their object is sure to be announced, because the stored event is sent
  again until the broker confirms it.
* S3: the objects under `{s3_prefix}{name}/` in the bucket's own S3 bucket not in the copy
  ledger yet are copied server-side (the listing is complete every time, so an object that
  appears out of key order is still copied). Like a pull, a copy is keyed by the moment it
  is made (retention deletes raw objects by the date in their key, so a key dated by an old
  source's LastModified could be deleted before it is parsed). Then (in one transaction) its
  ledger row together with its `logs.extracted` event, then the event itself: a crash
  between copy and announcement neither loses the announcement (the stored event is sent
  at the next cycle) nor copies the object again (the ledger has it). A source that changes
  after it was copied (new ETag) is looked at again: if it only grew (its first bytes are
  those copied before, by sha256), its new bytes are copied as an object of their own, so
  none of its records is parsed twice; if it was rewritten otherwise, it is copied whole
  again (its records then become rows beside those of the earlier version). A record cut in
  two by the moment of the earlier copy (the source did not end with a newline then) stays
  two records.

Nothing is announced before it is stored; a failed or partial transfer stores nothing under
`raw/` and is tried again at the next cycle.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError
from confluent_kafka import KafkaException
from prometheus_client import Counter, Histogram
from sqlalchemy.exc import SQLAlchemyError

from rbr_log_extractor.locations import parse_location
from rbr_log_extractor.outages import BROKER, DATABASE, S3, Outages, unavailable_dependency
from rbr_log_extractor.repository import DropFile, DropFolder, DropState, ExtractState, LedgerEntry
from rbr_log_extractor.settings import ExtractorSettings
from rbr_log_extractor.storage import (
    RawObjectWriter,
    StoredObject,
    TooLarge,
    copy_with_metadata,
    head_metadata,
    object_metadata,
    raw_key,
    staging_key,
)
from rbr_runtime.buckets import BucketClients, base_url, refused_call, token_header
from rbr_runtime.kafka import DeliveryError, EventProducer
from rbr_runtime.secrets import TokenDecryptionError, TokenVault
from rbr_schemas import (
    LOGS_EXTRACTED,
    BucketRegistered,
    DeliveryMode,
    LogsExtracted,
    LogSource,
    utcnow,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

CURSOR_HEADER = "X-Log-Cursor"
EXTRACT_PATH = "/extract_logs"
READ_CHUNK = 1024 * 1024
EVENT_NAMESPACE = uuid.UUID("3c8d7a52-8f0e-4b59-a2f4-0b7e5d7c1f20")
_CURSOR = re.compile(r"[\x21-\x7e]{1,255}")
# The object an earlier copy was read from is gone, or was replaced meanwhile.
MISSING_OR_CHANGED = ("404", "NoSuchKey", "412", "PreconditionFailed")

EXTRACTIONS = Counter(
    "rbr_extractor_extractions_total", "Bucket extractions, by source and outcome.",
    ["source", "outcome"],
)  # fmt: skip
OBJECTS = Counter("rbr_extractor_objects_total", "Raw objects stored, by source.", ["source"])
BYTES = Counter("rbr_extractor_bytes_total", "Raw log bytes stored, by source.", ["source"])
REWRITTEN = Counter(
    "rbr_extractor_rewritten_total",
    "S3 source objects rewritten with other content after a copy (copied whole again).",
)
SECONDS = Histogram(
    "rbr_extractor_seconds",
    "Time one bucket's extraction took.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)


class ExtractionError(Exception):
    """The bucket's logs could not be extracted this time.

    Attributes:
        reason: a short description, free of secrets (stored as `last_error`).
        outage: the registry's own dependency that was down ("database", "S3", "broker"),
            or None when the bucket failed (or the data was bad): an outage is retried as
            soon as the dependency is back, a bucket's failure at its next slot.
        recorded: whether the failure made it into `extract_cursors` (not while the
            database is down: the scheduler records it when the database is back).
    """

    def __init__(self, reason: str, *, outage: str | None = None, recorded: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.outage = outage
        self.recorded = recorded


class TooSlow(Exception):
    """A bucket sent less than the minimum rate over a whole window."""


class RateFloor:
    """Watches a transfer's pace: at least `min_rate` bytes/s over each window of `window` s.

    The pace is measured over consecutive windows, not since the start, so a fast first
    burst cannot buy a trickle afterwards. A transfer shorter than one window is never
    judged (a small pull finishes whatever its pace). A bucket that sends nothing at all is
    cut off by the per-read timeout (RBR_BUCKET_TIMEOUT) before a window ends.
    """

    def __init__(
        self, min_rate: float, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._min_rate = min_rate
        self._window = window
        self._clock = clock
        self._started = clock()
        self._bytes = 0

    def add(self, count: int) -> None:
        """Counts bytes received.

        Raises:
            TooSlow: the window that just ended brought less than min_rate bytes/s.
        """
        self._bytes += count
        elapsed = self._clock() - self._started
        if self._min_rate <= 0 or elapsed < self._window:
            return
        if self._bytes < self._min_rate * elapsed:
            raise TooSlow(
                f"the bucket sent {self._bytes} bytes in {elapsed:.0f} s, less than "
                f"{self._min_rate:.0f} bytes/s"
            )
        self._started += elapsed
        self._bytes = 0


class Interrupted(Exception):
    """The service is stopping; the transfer was abandoned and nothing was announced."""


@dataclass
class Outcome:
    """What one extraction stored (and, from S3, the newest upload its listings showed)."""

    objects: int = 0
    bytes: int = 0
    newest_upload_at: datetime | None = None

    def add(self, stored: StoredObject | None) -> None:
        """Counts a stored object."""
        if stored is not None:
            self.objects += 1
            self.bytes += stored.size

    def saw(self, item: Any) -> None:
        """Takes note of a listed source object's upload time."""
        modified = item.get("LastModified")
        if modified is not None and (
            self.newest_upload_at is None or modified > self.newest_upload_at
        ):
            self.newest_upload_at = modified


@dataclass(frozen=True)
class DropObject:
    """One object of a bucket's drop folders, as listed."""

    uri: str
    file_name: str
    bucket: str
    client: Any
    item: Any

    @property
    def size(self) -> int:
        """Returns its size."""
        return int(self.item["Size"])


def event_id(object_id: str) -> str:
    """Returns the logs.extracted event id of an object (the same when it is re-sent)."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"logs.extracted:{object_id}"))


def source_prefix(prefix: str, bucket_name: str) -> str:
    """Returns where a bucket's own log objects are: `{prefix}{name}/`.

    Several honeypots may share one S3 bucket and prefix; their objects differ by name, so
    listing only this bucket's folder never attributes another honeypot's logs to it.
    """
    folder = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    return f"{folder}{bucket_name}/"


def valid_cursor(value: str | None) -> str | None:
    """Returns the bucket's cursor header if it is a sane token, else None."""
    if value is None:
        return None
    if _CURSOR.fullmatch(value) is None:
        log.warning("ignoring an invalid %s header (%d characters)", CURSOR_HEADER, len(value))
        return None
    return value


class Extractor:
    """Extracts the logs of one bucket at a time (thread-safe: one call per bucket)."""

    def __init__(
        self,
        settings: ExtractorSettings,
        *,
        state: ExtractState,
        s3: S3Client,
        source_s3: Callable[[str], S3Client],
        producer: EventProducer,
        http: BucketClients[httpx.Client],
        vault: TokenVault,
        drops: DropState | None = None,
    ) -> None:
        """Prepares the extractor.

        Args:
            settings: the service settings.
            state: cursors, pending events and the copy ledger.
            s3: a client for the registry's bucket.
            source_s3: returns a client for the buckets' own S3 in a region.
            producer: sends logs.extracted.
            http: the clients buckets are called with (TLS as configured, no redirects).
            vault: decrypts bucket tokens.
            drops: the buckets' drop folders and files, and their uploads' freshness.
        """
        self._settings = settings
        self._state = state
        self._s3 = s3
        self._source_s3 = source_s3
        self._producer = producer
        self._http = http
        self._vault = vault
        self._drops = drops or DropState(state.engine)
        self.outages = Outages()

    def close(self) -> None:
        """Flushes the producer and closes the HTTP client."""
        self._producer.flush()
        for client in self._http.made():
            client.close()

    def extract(
        self, record: BucketRegistered, stopping: Callable[[], bool] = lambda: False
    ) -> Outcome:
        """Extracts what is new of one bucket and records the outcome.

        Raises:
            ExtractionError: the bucket, S3, the database or the broker failed; nothing new
                was announced that is not stored, and the next cycle tries again.
            Interrupted: the service is stopping.
        """
        from_s3 = record.s3 is not None or record.delivery_mode is DeliveryMode.S3_DROP
        source = LogSource.S3 if from_s3 else LogSource.HTTP
        started = time.monotonic()
        try:
            self._state.ensure(record.name)
            self._announce_pending(record.name)
            folders = self._drops.linked_folders(record.bucket_id)
            if from_s3 or folders:
                source = LogSource.S3
                outcome = self._copy_from_sources(record, folders, stopping)
            else:
                outcome = self._pull_http(record, stopping)
            self._state.record_outcome(record.name, None)
        except Interrupted:
            EXTRACTIONS.labels(source.value, "interrupted").inc()
            raise
        except (ExtractionError, httpx.HTTPError, BotoCoreError, ClientError, SQLAlchemyError,
                TokenDecryptionError, TooLarge, TooSlow, DeliveryError, KafkaException,
                OSError) as error:  # fmt: skip
            EXTRACTIONS.labels(source.value, "failed").inc()
            raise self._failed(record.name, error) from error
        SECONDS.observe(time.monotonic() - started)
        EXTRACTIONS.labels(source.value, "ok").inc()
        # What worked is no longer down: the database always, S3 and the broker once
        # something was stored and announced.
        self.outages.up(DATABASE, *((S3, BROKER) if outcome.objects else ()))
        return outcome

    def _failed(self, name: str, error: Exception) -> ExtractionError:
        """Reports and records a failed extraction; returns the error to raise."""
        reason = describe(error)
        outage = unavailable_dependency(error)
        if outage is None:
            log.warning("extraction failed, retried next cycle: %s", reason)
        else:
            self.outages.down(outage, reason)
        recorded = self._record_failure(name, reason)
        return ExtractionError(reason, outage=outage, recorded=recorded)

    def _record_failure(self, name: str, reason: str) -> bool:
        """Stores the failure in extract_cursors; False if the database is unavailable."""
        try:
            self._state.record_outcome(name, reason)
        except SQLAlchemyError as error:
            self.outages.down(DATABASE, describe(error))
            return False
        return True

    # -- announcing ---------------------------------------------------------------------------

    def _send(self, event: LogsExtracted) -> None:
        self._producer.send(
            LOGS_EXTRACTED,
            event.name,
            event,
            subject=event.name,
            event_id=event_id(event.object_id),
        )
        OBJECTS.labels(event.source.value).inc()
        BYTES.labels(event.source.value).inc(event.size_bytes)

    def _announce_pending(self, name: str) -> None:
        """Sends the event of an object stored earlier whose announcement was not confirmed."""
        pending = self._state.state(name).pending_event
        if pending is None:
            return
        log.info("announcing an object stored by an earlier cycle")
        self._send(LogsExtracted.model_validate_json(pending))
        self._state.clear_pending(name, pending)

    # -- HTTP ---------------------------------------------------------------------------------

    def _pull_http(self, record: BucketRegistered, stopping: Callable[[], bool]) -> Outcome:
        # Checked before every call, not only at registration: see refused_call.
        reason = refused_call(record, self._settings)
        if reason is not None:
            raise ExtractionError(reason)
        token = self._vault.decrypt(record.token_ciphertext)
        cursor = self._state.state(record.name).http_cursor
        started = utcnow()
        object_id = str(uuid.uuid4())
        writer = RawObjectWriter(
            self._s3,
            self._settings.s3_bucket,
            final_key=raw_key(record.name, started, object_id),
            staging=staging_key(record.name, object_id),
            part_bytes=self._settings.extract_part_bytes,
            max_bytes=self._settings.extract_max_bytes,
            source=LogSource.HTTP.value,
        )
        try:
            new_cursor = self._stream(record, token, cursor, writer, stopping)
            stored = writer.finish()
        except BaseException:
            writer.abort()
            raise
        if stored is None:
            if new_cursor is not None and new_cursor != cursor:
                self._state.store_cursor(record.name, new_cursor)
            log.info("nothing new", extra={"cursor": new_cursor})
            return Outcome()
        event = LogsExtracted(
            object_id=object_id,
            name=record.name,
            ip_address=record.ip_address,
            s3_bucket=self._settings.s3_bucket,
            s3_key=stored.key,
            size_bytes=stored.size,
            sha256=stored.sha256,
            source=LogSource.HTTP,
            source_ref=new_cursor,
            extracted_at=started,
        )
        self._store_and_announce(event, new_cursor)
        log.info(
            "stored %d bytes as %s",
            stored.size,
            stored.key,
            extra={"cursor": new_cursor, "previous_cursor": cursor},
        )
        return Outcome(1, stored.size)

    def _stream(
        self,
        record: BucketRegistered,
        token: str,
        cursor: str | None,
        writer: RawObjectWriter,
        stopping: Callable[[], bool],
    ) -> str | None:
        url = base_url(record, self._settings) + EXTRACT_PATH
        params = {"since": cursor} if cursor is not None else None
        deadline = time.monotonic() + self._settings.extract_timeout
        client = self._http.for_bucket(record)
        if client is None:
            raise ExtractionError("RBR_BUCKET_CA_FILE is missing or unreadable; see the log")
        # Identity encoding, and the body read raw: httpx would otherwise inflate a gzip
        # body as it comes, and one small chunk of a hostile bucket's bomb would expand to
        # gigabytes in memory. A bucket that compresses anyway is stored compressed (the
        # parser inflates with bounded memory), and RBR_EXTRACT_MAX_BYTES counts real bytes.
        headers = token_header(token) | {"Accept-Encoding": "identity"}
        pace = RateFloor(self._settings.extract_min_rate, self._settings.extract_rate_window)
        with client.stream("GET", url, params=params, headers=headers) as response:
            if response.status_code != httpx.codes.OK:
                raise ExtractionError(f"{EXTRACT_PATH} answered HTTP {response.status_code}")
            new_cursor = valid_cursor(response.headers.get(CURSOR_HEADER))
            # Each piece as it arrives, not gathered into large chunks: a bucket sending
            # slowly would otherwise keep a SIGTERM (and the timeout) unnoticed for minutes,
            # past the shutdown's grace, and leave its multipart upload and lease behind.
            for chunk in response.iter_raw():
                if stopping():
                    raise Interrupted("stopping")
                if time.monotonic() > deadline:
                    raise ExtractionError(
                        f"transfer took longer than {self._settings.extract_timeout:.0f}s"
                    )
                pace.add(len(chunk))
                writer.write(chunk)
        return new_cursor

    def _store_and_announce(self, event: LogsExtracted, cursor: str | None) -> None:
        payload = event.model_dump_json()
        try:
            self._state.store_extraction(event.name, cursor=cursor, pending_event=payload)
        except SQLAlchemyError:
            if cursor is None:
                # A bucket without cursors will not send these records again: announce the
                # stored object now rather than lose it.
                self._send(event)
            raise
        self._send(event)
        self._state.clear_pending(event.name, payload)

    # -- S3 -----------------------------------------------------------------------------------

    def _copy_from_sources(
        self, record: BucketRegistered, folders: list[DropFolder], stopping: Callable[[], bool]
    ) -> Outcome:
        """Copies what is new in the bucket's own S3 folder and its linked drop folders.

        Then records the newest upload the listings showed (the freshness of an s3-drop
        bucket's uploads), as of when they began.
        """
        checked_at = utcnow()
        outcome = Outcome()
        if record.s3 is not None:
            self._copy_from_s3(record, stopping, outcome)
        if folders:
            self._copy_from_drop_folders(record, folders, stopping, outcome)
        if outcome.objects:
            log.info("copied %d objects (%d bytes)", outcome.objects, outcome.bytes)
        self._drops.record_uploads(record.name, outcome.newest_upload_at, checked_at)
        return outcome

    def _copy_from_s3(
        self, record: BucketRegistered, stopping: Callable[[], bool], outcome: Outcome
    ) -> None:
        source = record.s3
        assert source is not None
        client = self._source_s3(source.region)
        prefix = source_prefix(source.prefix, record.name)
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=source.bucket_name, Prefix=prefix):
            items = {
                f"s3://{source.bucket_name}/{item['Key']}": item
                for item in page.get("Contents", [])
            }
            for item in items.values():
                outcome.saw(item)
            done = self._state.copied(record.name, items)
            for uri in sorted(items):
                entry = done.get(uri)
                if entry is not None and entry.source_etag == items[uri]["ETag"]:
                    continue
                check_stopping(stopping)
                outcome.add(
                    self._copy_one(record, client, uri, items[uri], entry, stopping=stopping)
                )

    # -- drop folders ---------------------------------------------------------------------------

    def _copy_from_drop_folders(
        self,
        record: BucketRegistered,
        folders: list[DropFolder],
        stopping: Callable[[], bool],
        outcome: Outcome,
    ) -> None:
        """Copies what is new in the bucket's drop folders, file name by file name.

        The real honeypot uploads the same daily files again under each new instance's
        folder (grown, or not): a file name is one logical file across the bucket's
        folders, copied from where its last copy ended, smallest version first.
        """
        objects = self._list_drop_objects(folders, outcome)
        done = self._state.copied(record.name, [o.uri for o in objects])
        new = [
            o
            for o in objects
            if (entry := done.get(o.uri)) is None or entry.source_etag != o.item["ETag"]
        ]
        files = self._drops.files(record.name, [o.file_name for o in new])
        for drop in sorted(new, key=lambda o: (o.file_name, o.size, o.uri)):
            check_stopping(stopping)
            file, stored = self._copy_drop_object(record, drop, files.get(drop.file_name), stopping)
            files[drop.file_name] = file
            outcome.add(stored)

    def _list_drop_objects(self, folders: list[DropFolder], outcome: Outcome) -> list[DropObject]:
        objects: list[DropObject] = []
        for folder in folders:
            location = parse_location(f"{folder.location}?region={folder.region}")
            client = self._source_s3(folder.region)
            prefix = location.folder_prefix(folder.folder)
            paginator = client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=location.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    name = item["Key"][len(prefix) :]
                    if not name:
                        continue
                    outcome.saw(item)
                    uri = f"s3://{location.bucket}/{item['Key']}"
                    objects.append(DropObject(uri, name, location.bucket, client, item))
        return objects

    def _copy_drop_object(
        self,
        record: BucketRegistered,
        drop: DropObject,
        file: DropFile | None,
        stopping: Callable[[], bool],
    ) -> tuple[DropFile, StoredObject | None]:
        """Copies what one drop object adds to its logical file; returns the file's state."""
        item = drop.item
        offset, whole = 0, hashlib.sha256()
        if file is not None and drop.size >= file.size_bytes:
            offset, whole = self._matching_prefix(drop, file.size_bytes, file.source_sha256)
        elif file is not None and self._is_prefix_of(drop, file):
            # An earlier, smaller version of what was copied (from another instance's folder).
            self._drops.record_copy(
                record.name, source=self._source_entry(drop, None, None), file=file,
                pending_event=None,
            )  # fmt: skip
            return file, None
        if file is not None and file.size_bytes > 0 and offset == 0:
            self._rewritten(drop.uri, item["ETag"])
        if offset == drop.size:
            kept = DropFile(
                drop.file_name, drop.size, whole.hexdigest(), drop.uri, item["ETag"],
                file.target_key if file is not None else None,
            )  # fmt: skip
            self._drops.record_copy(
                record.name, source=self._source_entry(drop, kept.source_sha256, kept.target_key),
                file=kept, pending_event=None,
            )  # fmt: skip
            return kept, None
        stored, whole_sha, event = self._copy_bytes(
            record, drop.client, drop.bucket, drop.uri, item, offset, whole, stopping
        )
        copied = DropFile(drop.file_name, drop.size, whole_sha, drop.uri, item["ETag"], stored.key)
        payload = event.model_dump_json()
        self._drops.record_copy(
            record.name, source=self._source_entry(drop, whole_sha, stored.key), file=copied,
            pending_event=payload,
        )  # fmt: skip
        self._send(event)
        self._state.clear_pending(record.name, payload)
        return copied, stored

    @staticmethod
    def _source_entry(drop: DropObject, sha256: str | None, target_key: str | None) -> LedgerEntry:
        return LedgerEntry(drop.uri, drop.item["ETag"], drop.size, sha256, target_key)

    def _matching_prefix(self, drop: DropObject, length: int, expected: str) -> tuple[int, Any]:
        """Returns (length, its hash) if the object starts with the bytes copied, else (0, new)."""
        if length == 0:
            return 0, hashlib.sha256()
        digest = prefix_digest(
            drop.client, drop.bucket, drop.item["Key"], drop.item["ETag"], length
        )
        if digest.hexdigest() != expected:
            return 0, hashlib.sha256()
        return length, digest

    def _is_prefix_of(self, drop: DropObject, file: DropFile) -> bool:
        """Tells whether a smaller object holds the first bytes of what was copied of its file.

        Compared with the object the copied bytes were last read from (still in S3); if it
        is gone or changed, the smaller object counts as rewritten.
        """
        mine = prefix_digest(
            drop.client, drop.bucket, drop.item["Key"], drop.item["ETag"], drop.size
        )
        bucket, _, key = file.reference_uri.removeprefix("s3://").partition("/")
        try:
            theirs = prefix_digest(drop.client, bucket, key, file.reference_etag, drop.size)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in MISSING_OR_CHANGED:
                raise
            return False
        return bool(mine.hexdigest() == theirs.hexdigest())

    def _rewritten(self, uri: str, etag: str) -> None:
        REWRITTEN.inc()
        log.warning(
            "%s holds other content than what was copied of that file (ETag %s); copying it "
            "whole again",
            uri,
            etag,
        )

    def _copy_one(
        self,
        record: BucketRegistered,
        client: S3Client,
        uri: str,
        item: Any,
        entry: LedgerEntry | None,
        *,
        stopping: Callable[[], bool],
    ) -> StoredObject | None:
        """Copies a source object not copied yet, or what it gained since its last copy.

        A source that was copied and then grew (same key, longer, its earlier bytes
        unchanged: a log file uploaded again with more lines) gets only its new bytes copied,
        as an object of their own, so no record is parsed twice. A source rewritten
        otherwise (shorter, or its earlier bytes changed) is copied whole again: its records
        become rows beside those of the version copied before.
        """
        source = record.s3
        assert source is not None
        etag, size = item["ETag"], int(item["Size"])
        offset, whole = self._unchanged_prefix(client, source.bucket_name, item, entry)
        if offset == size:
            # Nothing new (an empty object, or the same bytes uploaded again).
            self._state.record_copy(
                record.name,
                source_uri=uri,
                source_etag=etag,
                size_bytes=size,
                source_sha256=whole.hexdigest(),
                target_key=entry.target_key if entry is not None else None,
            )
            return None
        stored, whole_sha, event = self._copy_bytes(
            record, client, source.bucket_name, uri, item, offset, whole, stopping
        )
        payload = event.model_dump_json()
        # The ledger row and the pending event in one transaction: once the ledger says the
        # source was copied, its copy is sure to be announced (the pending event is sent
        # again at the next cycle until the broker confirms it).
        self._state.record_copy(
            record.name,
            source_uri=uri,
            source_etag=etag,
            size_bytes=size,
            source_sha256=whole_sha,
            target_key=stored.key,
            pending_event=payload,
        )
        self._send(event)
        self._state.clear_pending(record.name, payload)
        return stored

    def _copy_bytes(  # noqa: PLR0917 - one call site per kind of source, all positional
        self,
        record: BucketRegistered,
        client: S3Client,
        bucket: str,
        uri: str,
        item: Any,
        offset: int,
        whole: Any,
        stopping: Callable[[], bool],
    ) -> tuple[StoredObject, str, LogsExtracted]:
        """Copies a source object's bytes from offset on into a raw object of its own.

        Returns the stored object, the sha256 of the whole source, and the object's
        `logs.extracted` event (to be recorded, then sent).
        """
        key, etag = item["Key"], item["ETag"]
        version = f"{uri}#{etag}" if offset == 0 else f"{uri}#{etag}@{offset}"
        object_id = str(uuid.uuid5(EVENT_NAMESPACE, version))
        # Keyed by the copy's own time, as a pull is: retention goes by the key's date.
        copied_at = utcnow()
        final_key = raw_key(record.name, copied_at, object_id)
        if offset == 0 and self._settings.server_side_copy:
            stored = self._server_side_copy(client, bucket, key, etag, final_key)
            whole_sha = stored.sha256
        else:
            stored = self._stream_copy(
                client,
                bucket=bucket,
                key=key,
                etag=etag,
                final_key=final_key,
                object_id=object_id,
                offset=offset,
                whole=whole,
                stopping=stopping,
            )
            whole_sha = whole.hexdigest()
        event = LogsExtracted(
            object_id=object_id,
            name=record.name,
            ip_address=record.ip_address,
            s3_bucket=self._settings.s3_bucket,
            s3_key=stored.key,
            size_bytes=stored.size,
            sha256=stored.sha256,
            source=LogSource.S3,
            source_ref=uri,
            extracted_at=copied_at,
        )
        return stored, whole_sha, event

    def _unchanged_prefix(
        self, client: S3Client, bucket: str, item: Any, entry: LedgerEntry | None
    ) -> tuple[int, Any]:
        """Returns how many of the source's first bytes were copied before, and their hash.

        The hash object is returned to be fed the rest of the source, so the ledger gets the
        sha256 of the whole new version without reading it twice. (0, an empty hash) means
        the source is to be copied whole.
        """
        copied = entry.size_bytes if entry is not None else 0
        if entry is None or copied == 0 or copied > int(item["Size"]):
            return 0, hashlib.sha256()
        expected = entry.source_sha256 or self._target_sha256(entry.target_key)
        digest = prefix_digest(client, bucket, item["Key"], item["ETag"], copied)
        if digest.hexdigest() != expected:
            REWRITTEN.inc()
            log.warning(
                "%s was rewritten after it was copied (ETag %s, was %s); copying it whole again",
                item["Key"],
                item["ETag"],
                entry.source_etag,
            )
            return 0, hashlib.sha256()
        return copied, digest

    def _target_sha256(self, target_key: str | None) -> str | None:
        """Returns the sha256 of an earlier whole copy (ledger rows from before 0009)."""
        if target_key is None:
            return None
        try:
            _, metadata = head_metadata(self._s3, self._settings.s3_bucket, target_key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey"):
                raise
            return None  # gone with retention: nothing to compare with, the source is copied
        return metadata.get("sha256")

    def _server_side_copy(
        self, client: S3Client, bucket: str, key: str, etag: str, final_key: str
    ) -> StoredObject:
        """Copies a whole source within one S3 service (the bytes do not pass through here)."""
        size, sha256 = source_sha256(client, bucket, key, etag)
        copy_with_metadata(
            self._s3,
            source_bucket=bucket,
            source_key=key,
            bucket=self._settings.s3_bucket,
            key=final_key,
            metadata=object_metadata(size, sha256, LogSource.S3.value),
            source_client=client,
            source_etag=etag,
        )
        return StoredObject(final_key, size, sha256)

    def _stream_copy(
        self,
        client: S3Client,
        *,
        bucket: str,
        key: str,
        etag: str,
        final_key: str,
        object_id: str,
        offset: int,
        whole: Any,
        stopping: Callable[[], bool],
    ) -> StoredObject:
        """Copies through this process the source's bytes from offset on.

        Used when the source is on another S3 service than ours, or when only what a
        source gained since its last copy is copied. `whole` is fed the bytes too. When the
        service stops, the copy is abandoned (its upload aborted) and done next cycle.
        """
        writer = RawObjectWriter(
            self._s3,
            self._settings.s3_bucket,
            final_key=final_key,
            staging=staging_key(final_key.split("/")[1], object_id),
            part_bytes=self._settings.extract_part_bytes,
            max_bytes=self._settings.extract_max_bytes,
            source=LogSource.S3.value,
        )
        try:
            body = client.get_object(
                Bucket=bucket, Key=key, IfMatch=etag, Range=f"bytes={offset}-"
            )["Body"]
            for chunk in body.iter_chunks(READ_CHUNK):
                check_stopping(stopping)
                whole.update(chunk)
                writer.write(chunk)
            stored = writer.finish()
        except BaseException:
            writer.abort()
            raise
        if stored is None:
            raise ExtractionError(f"{key} was empty when read")
        return stored


def check_stopping(stopping: Callable[[], bool]) -> None:
    """Raises Interrupted if the service is stopping."""
    if stopping():
        raise Interrupted("stopping")


def prefix_digest(client: S3Client, bucket: str, key: str, etag: str | None, length: int) -> Any:
    """Returns the sha256 object of a source's first `length` bytes (of that ETag, if given)."""
    digest = hashlib.sha256()
    if length <= 0:
        return digest
    span = f"bytes=0-{length - 1}"
    if etag:
        body = client.get_object(Bucket=bucket, Key=key, Range=span, IfMatch=etag)["Body"]
    else:
        body = client.get_object(Bucket=bucket, Key=key, Range=span)["Body"]
    for chunk in body.iter_chunks(READ_CHUNK):
        digest.update(chunk)
    return digest


def source_sha256(client: S3Client, bucket: str, key: str, etag: str) -> tuple[int, str]:
    """Returns a source object's size and sha256: from its full-object checksum, or read."""
    head = client.head_object(Bucket=bucket, Key=key, IfMatch=etag, ChecksumMode="ENABLED")
    size = int(head["ContentLength"])
    checksum = head.get("ChecksumSHA256")
    if checksum and head.get("ChecksumType") == "FULL_OBJECT":
        return size, base64.b64decode(checksum).hex()
    digest = hashlib.sha256()
    body = client.get_object(Bucket=bucket, Key=key, IfMatch=etag)["Body"]
    for chunk in body.iter_chunks(READ_CHUNK):
        digest.update(chunk)
    return size, digest.hexdigest()


def describe(error: BaseException) -> str:
    """Returns a short reason for a failure, free of secrets (tokens travel in headers only)."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"S3 {details.get('Code', '?')}: {details.get('Message', '')}"[:500]
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"[:500]
