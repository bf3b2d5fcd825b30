"""One bucket's extraction: pulled over HTTP or copied from S3, by its delivery mode.

Nothing is announced before it is stored; a failed or partial transfer stores nothing under
`raw/`, is recorded in `extract_cursors`, and is tried again at the next cycle.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
from botocore.exceptions import BotoCoreError, ClientError
from confluent_kafka import KafkaException
from prometheus_client import Counter, Histogram
from sqlalchemy.exc import SQLAlchemyError

from rbr_log_extractor.announce import Announcer
from rbr_log_extractor.copies import ObjectCopier, SourceCopies
from rbr_log_extractor.drop_copies import DropCopies
from rbr_log_extractor.outages import BROKER, DATABASE, S3, Outages, unavailable_dependency
from rbr_log_extractor.outcome import ExtractionError, Interrupted, Outcome, describe
from rbr_log_extractor.pulls import HttpPulls, TooSlow
from rbr_log_extractor.settings import ExtractorSettings
from rbr_log_extractor.storage import TooLarge
from rbr_log_extractor.store import DropFolder, DropState, ExtractState
from rbr_runtime.buckets import BucketClients
from rbr_runtime.kafka import DeliveryError, EventProducer
from rbr_runtime.secrets import TokenDecryptionError, TokenVault
from rbr_schemas import BucketRegistered, DeliveryMode, LogSource, utcnow

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

EXTRACTIONS = Counter(
    "rbr_extractor_extractions_total", "Bucket extractions, by source and outcome.",
    ["source", "outcome"],
)  # fmt: skip
SECONDS = Histogram(
    "rbr_extractor_seconds",
    "Time one bucket's extraction took.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
# What an extraction may fail with, besides its own ExtractionError: recorded, tried again.
FAILURES = (
    ExtractionError, httpx.HTTPError, BotoCoreError, ClientError, SQLAlchemyError,
    TokenDecryptionError, TooLarge, TooSlow, DeliveryError, KafkaException, OSError,
)  # fmt: skip


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
        self._state = state
        self._drops = drops or DropState(state.engine)
        self._announcer = Announcer(state, producer)
        self._pulls = HttpPulls(
            settings, state=state, s3=s3, http=http, vault=vault, announcer=self._announcer
        )
        copier = ObjectCopier(settings, s3)
        self._source_copies = SourceCopies(
            state=state, copier=copier, source_s3=source_s3, announcer=self._announcer
        )
        self._drop_copies = DropCopies(
            state=state,
            drops=self._drops,
            copier=copier,
            source_s3=source_s3,
            announcer=self._announcer,
        )
        self.outages = Outages()

    def close(self) -> None:
        """Flushes the producer and closes the HTTP clients."""
        self._announcer.flush()
        self._pulls.close()

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
            self._announcer.send_pending(record.name)
            folders = self._drops.linked_folders(record.bucket_id)
            if from_s3 or folders:
                source = LogSource.S3
                outcome = self._copy(record, folders, stopping)
            else:
                outcome = self._pulls.pull(record, stopping)
            self._state.record_outcome(record.name, None)
        except Interrupted:
            EXTRACTIONS.labels(source.value, "interrupted").inc()
            raise
        except FAILURES as error:
            EXTRACTIONS.labels(source.value, "failed").inc()
            raise self._failed(record.name, error) from error
        SECONDS.observe(time.monotonic() - started)
        EXTRACTIONS.labels(source.value, "ok").inc()
        # What worked is no longer down: the database always, S3 and the broker once
        # something was stored and announced.
        self.outages.up(DATABASE, *((S3, BROKER) if outcome.objects else ()))
        return outcome

    def _copy(
        self, record: BucketRegistered, folders: list[DropFolder], stopping: Callable[[], bool]
    ) -> Outcome:
        """Copies what is new in the bucket's own S3 folder and its linked drop folders.

        Then records the newest upload the listings showed (the freshness of an s3-drop
        bucket's uploads), as of when they began.
        """
        checked_at = utcnow()
        outcome = Outcome()
        if record.s3 is not None:
            self._source_copies.copy(record, stopping, outcome)
        if folders:
            self._drop_copies.copy(record, folders, stopping, outcome)
        if outcome.objects:
            log.info("copied %d objects (%d bytes)", outcome.objects, outcome.bytes)
        self._drops.record_uploads(record.name, outcome.newest_upload_at, checked_at)
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
