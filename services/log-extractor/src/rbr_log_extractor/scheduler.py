"""When each bucket is extracted: once per interval slot, at the bucket's own phase.

Time is cut into slots of RBR_EXTRACT_INTERVAL; each bucket is due at a stable offset into
every slot (spreading the fleet over the interval). A bucket whose time in the current slot
has not come yet but which missed the previous slot (the service was down) is extracted at
once. Claiming a slot is a conditional update in `extract_cursors`, so one slot is extracted
once whichever replica owns the bucket; a lease keeps two processes off one bucket.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from prometheus_client import Gauge

from rbr_log_extractor.extractor import ExtractionError, Extractor, Interrupted
from rbr_log_extractor.repository import ExtractState
from rbr_log_extractor.settings import ExtractorSettings
from rbr_log_extractor.storage import remove_stale_staging
from rbr_runtime.jsonlog import log_context
from rbr_runtime.kafka import BucketDirectory
from rbr_runtime.schedule import due_at, slot_of
from rbr_schemas import BucketRegistered, utcnow

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 3600.0
IN_FLIGHT = Gauge("rbr_extractor_in_flight", "Bucket extractions in progress.")


def target_slot(name: str, now: datetime, interval: float, spread: float) -> int:
    """Returns the slot a bucket should have been extracted for by now."""
    slot = slot_of(now, interval)
    return slot if due_at(name, slot, interval, spread) <= now else slot - 1


def lease_for(settings: ExtractorSettings) -> timedelta:
    """Returns how long an extraction holds its bucket (longer than it may take)."""
    return timedelta(seconds=settings.extract_timeout + 60)


class ExtractScheduler:
    """The component that starts due extractions on a pool of threads."""

    def __init__(
        self,
        settings: ExtractorSettings,
        *,
        directory: BucketDirectory,
        extractor: Extractor,
        state: ExtractState,
        s3: S3Client,
    ) -> None:
        self._settings = settings
        self._directory = directory
        self._extractor = extractor
        self._state = state
        self._s3 = s3
        self._stop = threading.Event()
        self._done: dict[str, int] = {}
        self._in_flight: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(settings.extract_concurrency, thread_name_prefix="extract")
        self._next_housekeeping = 0.0

    def run(self) -> None:
        """Looks for due buckets every RBR_EXTRACT_TICK seconds until stop()."""
        try:
            while not self._stop.is_set():
                self._safely(self._housekeeping)
                self._safely(self.tick)
                self._stop.wait(self._settings.extract_tick)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def stop(self) -> None:
        """Stops starting extractions; those in progress abandon their transfer."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Tells whether stop() was called."""
        return self._stop.is_set()

    def _safely(self, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception:
            log.exception("scheduling failed; trying again at the next tick")

    def tick(self, now: datetime | None = None) -> int:
        """Starts the extractions that are due; returns how many it started."""
        if not self._directory.caught_up:
            return 0
        moment = now or utcnow()
        started = 0
        for record in self._directory.buckets():
            slot = target_slot(
                record.name, moment, self._settings.extract_interval, self._settings.extract_spread
            )
            if self._done.get(record.name, -2) >= slot or self._busy(record.name):
                continue
            self._start(record, slot)
            started += 1
        return started

    def wait_idle(self, timeout: float) -> bool:
        """Waits until no extraction is in progress (tests, the manual task)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._in_flight:
                    return True
            time.sleep(0.02)
        return False

    def _busy(self, name: str) -> bool:
        with self._lock:
            return name in self._in_flight

    def _start(self, record: BucketRegistered, slot: int) -> None:
        with self._lock:
            future = self._pool.submit(self._run_one, record, slot)
            self._in_flight[record.name] = future
            IN_FLIGHT.set(len(self._in_flight))

    def _run_one(self, record: BucketRegistered, slot: int) -> None:
        try:
            with log_context(bucket=record.name):
                self._extract_slot(record, slot)
        except Exception:
            log.exception("extraction of %s crashed", record.name)
        finally:
            with self._lock:
                self._in_flight.pop(record.name, None)
                IN_FLIGHT.set(len(self._in_flight))

    def _extract_slot(self, record: BucketRegistered, slot: int) -> None:
        if not self._state.claim_slot(record.name, slot, lease_for(self._settings)):
            self._done[record.name] = slot  # done by another replica, or it holds the lease
            return
        self._done[record.name] = slot
        give_back: int | None = None
        try:
            self._extractor.extract(record, self._stop.is_set)
        except Interrupted:
            give_back = slot  # stopped mid-transfer: whoever runs next does this slot
            self._done.pop(record.name, None)
        except ExtractionError:
            pass  # recorded in extract_cursors; the next slot tries again
        finally:
            self._state.release(record.name, give_back_slot=give_back)

    def _housekeeping(self) -> None:
        """Removes what crashed transfers left in staging/ (hourly; its failure delays nothing)."""
        if time.monotonic() < self._next_housekeeping:
            return
        self._next_housekeeping = time.monotonic() + HOUSEKEEPING_SECONDS
        removed = remove_stale_staging(self._s3, self._settings.s3_bucket)
        if removed:
            log.info("removed %d stale staging uploads or objects", removed)

    def readiness(self) -> str | None:
        """Readiness: the directory is caught up."""
        return self._directory.readiness()
