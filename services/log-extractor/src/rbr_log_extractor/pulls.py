"""HTTP pulls: `GET {base}/extract_logs` streamed into a raw object, with the bucket's cursor.

With a stored cursor the request carries `?since=<cursor>`, so records of a transfer that
failed are sent again; a bucket without cursors sends what is new since its previous pull.
The new cursor is stored in the transaction that records the object's event.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
from sqlalchemy.exc import SQLAlchemyError

from rbr_log_extractor.announce import Announcer
from rbr_log_extractor.outcome import ExtractionError, Interrupted, Outcome
from rbr_log_extractor.settings import ExtractorSettings
from rbr_log_extractor.storage import RawObjectWriter, raw_key, raw_object_writer
from rbr_log_extractor.store import ExtractState
from rbr_runtime.buckets import BucketClients, base_url, refused_call, token_header
from rbr_runtime.secrets import TokenVault
from rbr_schemas import BucketRegistered, LogsExtracted, LogSource, utcnow

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

CURSOR_HEADER = "X-Log-Cursor"
EXTRACT_PATH = "/extract_logs"
_CURSOR = re.compile(r"[\x21-\x7e]{1,255}")


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


def valid_cursor(value: str | None) -> str | None:
    """Returns the bucket's cursor header if it is a sane token, else None."""
    if value is None:
        return None
    if _CURSOR.fullmatch(value) is None:
        log.warning("ignoring an invalid %s header (%d characters)", CURSOR_HEADER, len(value))
        return None
    return value


class HttpPulls:
    """Pulls what is new of a bucket over HTTP (thread-safe: one call per bucket)."""

    def __init__(
        self,
        settings: ExtractorSettings,
        *,
        state: ExtractState,
        s3: S3Client,
        http: BucketClients[httpx.Client],
        vault: TokenVault,
        announcer: Announcer,
    ) -> None:
        self._settings = settings
        self._state = state
        self._s3 = s3
        self._http = http
        self._vault = vault
        self._announcer = announcer

    def close(self) -> None:
        """Closes the HTTP clients."""
        for client in self._http.made():
            client.close()

    def pull(self, record: BucketRegistered, stopping: Callable[[], bool]) -> Outcome:
        """Pulls the bucket's new records into one raw object and announces it.

        Raises:
            ExtractionError: the bucket refused or failed the pull (and the errors of httpx,
                S3, the database or the broker, passed on): nothing new was announced.
            Interrupted: the service is stopping.
        """
        # Checked before every call, not only at registration: see refused_call.
        reason = refused_call(record, self._settings)
        if reason is not None:
            raise ExtractionError(reason)
        token = self._vault.decrypt(record.token_ciphertext)
        cursor = self._state.state(record.name).http_cursor
        started = utcnow()
        object_id = str(uuid.uuid4())
        writer = raw_object_writer(
            self._s3,
            self._settings,
            name=record.name,
            object_id=object_id,
            final_key=raw_key(record.name, started, object_id),
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
        """Stores the new cursor with the object's event (one transaction), then sends it."""
        payload = event.model_dump_json()
        try:
            self._state.store_extraction(event.name, cursor=cursor, pending_event=payload)
        except SQLAlchemyError:
            if cursor is None:
                # A bucket without cursors will not send these records again: announce the
                # stored object now rather than lose it.
                self._announcer.send(event)
            raise
        self._announcer.send_recorded(event, payload)
