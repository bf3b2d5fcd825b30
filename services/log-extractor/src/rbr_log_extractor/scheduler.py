"""When each bucket is extracted: once per slot at its own phase, catching up a missed slot.

Slots and phases are `rbr_runtime.schedule.FleetSlots` with catch-up; a slot is claimed in
`extract_cursors` (once whichever replica owns the bucket) with a lease on the bucket.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from prometheus_client import Gauge

from rbr_log_extractor.extractor import Extractor
from rbr_log_extractor.outages import DATABASE, unavailable_dependency
from rbr_log_extractor.outcome import ExtractionError, Interrupted, describe
from rbr_log_extractor.settings import ExtractorSettings
from rbr_log_extractor.storage import remove_stale_staging
from rbr_log_extractor.store import ExtractState
from rbr_runtime.jsonlog import log_context
from rbr_runtime.kafka import BucketDirectory
from rbr_runtime.schedule import FleetSlots
from rbr_schemas import BucketRegistered, utcnow

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 3600.0
# The longest wait before an extraction failed by an outage is tried again.
MAX_OUTAGE_RETRY_SECONDS = 60.0
IN_FLIGHT = Gauge("rbr_extractor_in_flight", "Bucket extractions running (transfers under way).")


def extract_slots(settings: ExtractorSettings) -> FleetSlots:
    """Returns the extraction schedule: a slot missed while nothing ran is extracted at once."""
    return FleetSlots(settings.extract_interval, settings.extract_spread, catch_up=True)


def lease_for(settings: ExtractorSettings) -> timedelta:
    """Returns how long an extraction holds its bucket (longer than it may take)."""
    return timedelta(seconds=settings.extract_timeout + 60)


@dataclass(frozen=True)
class Ending:
    """How an extraction gives its lease back.

    Attributes:
        give_back_slot: the slot to be done again (interrupted, or failed by an outage).
        failure: a failure to record with the release (it could not be recorded when it
            happened, the database being down).
    """

    give_back_slot: int | None = None
    failure: str | None = None


class ExtractScheduler:
    """The component that starts due extractions on a pool of threads.

    Fairness: at most RBR_EXTRACT_CONCURRENCY extractions run at once, and nothing waits in
    a queue behind them: a due bucket is started when a slot is free, buckets whose last
    extraction went well first. Buckets whose last extraction failed (down, answering
    errors, too slow) hold at most half the slots, so a set of slow or broken buckets can
    never starve the healthy ones; with the minimum transfer rate (RBR_EXTRACT_MIN_RATE),
    a trickling pull is given up after one RBR_EXTRACT_RATE_WINDOW.

    Outages: an extraction failed by the database, S3 or the broker gives its slot back and
    is tried again (after a short backoff) once the dependency answers, not at the next
    slot. A lease that could not be released (the database was gone) is remembered and
    released, with the failure recorded, as soon as the database answers again; until then
    nothing else is started. Each outage is one warning and one info line (see `outages`).
    """

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
        self._slots = extract_slots(settings)
        self._directory = directory
        self._extractor = extractor
        self._outages = extractor.outages
        self._state = state
        self._s3 = s3
        self._stop = threading.Event()
        self._done: dict[str, int] = {}
        self._in_flight: dict[str, Future[None]] = {}
        self._failing: set[str] = set()
        self._unreleased: dict[str, Ending] = {}
        self._retry: dict[str, tuple[int, float]] = {}
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
        except Exception as error:  # noqa: BLE001 - reported; the next tick tries again
            self._report(error, "scheduling failed; trying again at the next tick")

    def _report(self, error: Exception, what: str) -> None:
        """Logs an error: an outage once per outage, anything else with its traceback."""
        dependency = unavailable_dependency(error)
        if dependency is None:
            log.error(what, exc_info=error)
            return
        self._outages.down(dependency, describe(error))

    def tick(self, now: datetime | None = None) -> int:
        """Starts the extractions that are due and fit; returns how many it started."""
        if not self._directory.caught_up or not self._release_remembered():
            return 0
        moment = now or utcnow()
        started = 0
        for record, slot in self._due(moment):
            if not self._has_room(record.name):
                continue
            self._start(record, slot)
            started += 1
        return started

    def _due(self, moment: datetime) -> list[tuple[BucketRegistered, int]]:
        """Returns the buckets to extract now, those whose last extraction went well first."""
        records = {record.name: record for record in self._directory.buckets()}
        clock = time.monotonic()
        due = [
            (records[name], slot)
            for name, slot in self._slots.due(records, moment, self._done)
            if self._startable(name, clock)
        ]
        # Stable: within each group, the earliest due first.
        return sorted(due, key=lambda item: item[0].name in self._failing)

    def _startable(self, name: str, clock: float) -> bool:
        with self._lock:
            if name in self._in_flight or name in self._unreleased:
                return False
        _, retry_at = self._retry.get(name, (0, 0.0))
        return clock >= retry_at

    def _has_room(self, name: str) -> bool:
        """Tells whether one more extraction fits (failing buckets hold at most half)."""
        with self._lock:
            if len(self._in_flight) >= self._settings.extract_concurrency:
                return False
            if name not in self._failing:
                return True
            failing = sum(1 for running in self._in_flight if running in self._failing)
        return failing < max(1, self._settings.extract_concurrency // 2)

    def wait_idle(self, timeout: float) -> bool:
        """Waits until no extraction is in progress (tests, the manual task)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._in_flight:
                    return True
            time.sleep(0.02)
        return False

    def _start(self, record: BucketRegistered, slot: int) -> None:
        with self._lock:
            future = self._pool.submit(self._run_one, record, slot)
            self._in_flight[record.name] = future

    def _run_one(self, record: BucketRegistered, slot: int) -> None:
        try:
            with log_context(bucket=record.name):
                self._extract_slot(record, slot)
        except Exception:
            self._failing.add(record.name)
            log.exception("extraction of %s crashed", record.name)
        finally:
            with self._lock:
                self._in_flight.pop(record.name, None)

    def _extract_slot(self, record: BucketRegistered, slot: int) -> None:
        if not self._claim(record.name, slot):
            return
        ending = Ending()
        IN_FLIGHT.inc()
        try:
            ending = self._extract_claimed(record, slot)
        finally:
            IN_FLIGHT.dec()
            self._release(record.name, ending)

    def _claim(self, name: str, slot: int) -> bool:
        """Claims the slot; False if it is done, another process holds the bucket, or no DB."""
        try:
            claimed = self._state.claim_slot(name, slot, lease_for(self._settings))
        except Exception as error:  # noqa: BLE001 - reported; released when the DB is back
            # The claim may have been committed before the connection died: release it (and
            # give the slot back) once the database answers, so nothing waits for the lease.
            self._remember(name, Ending(give_back_slot=slot))
            self._report(error, f"could not claim {name}")
            return False
        self._outages.up(DATABASE)
        self._done[name] = slot  # claimed, or done by another replica, or it holds the lease
        return claimed

    def _extract_claimed(self, record: BucketRegistered, slot: int) -> Ending:
        try:
            self._extractor.extract(record, self._stop.is_set)
        except Interrupted:
            self._done.pop(record.name, None)
            return Ending(give_back_slot=slot)  # stopped mid-transfer: whoever runs next does it
        except ExtractionError as error:
            return self._after_failure(record.name, slot, error)
        self._failing.discard(record.name)
        self._retry.pop(record.name, None)
        return Ending()

    def _after_failure(self, name: str, slot: int, error: ExtractionError) -> Ending:
        failure = None if error.recorded else error.reason
        if error.outage is None:
            self._failing.add(name)  # the bucket's fault: the next slot tries again
            return Ending(failure=failure)
        # Not the bucket's fault: the slot is done again once the dependency is back.
        attempts, _ = self._retry.get(name, (0, 0.0))
        delay = min(self._settings.extract_tick * 2**attempts, self._max_retry_delay())
        self._retry[name] = (attempts + 1, time.monotonic() + delay)
        self._done.pop(name, None)
        return Ending(give_back_slot=slot, failure=failure)

    def _max_retry_delay(self) -> float:
        return min(MAX_OUTAGE_RETRY_SECONDS, self._settings.extract_interval)

    def _release(self, name: str, ending: Ending) -> None:
        """Gives the lease back; remembered if the database is down, released when it is back."""
        try:
            self._state.release(name, give_back_slot=ending.give_back_slot, failure=ending.failure)
        except Exception as error:  # noqa: BLE001 - reported; released when the DB is back
            self._remember(name, ending)
            self._report(error, f"could not release {name}")
            return
        self._outages.up(DATABASE)

    def _remember(self, name: str, ending: Ending) -> None:
        with self._lock:
            self._unreleased[name] = ending

    def _release_remembered(self) -> bool:
        """Releases the leases the database was down for; False while it still is."""
        with self._lock:
            unreleased = dict(self._unreleased)
        for name, ending in unreleased.items():
            try:
                self._state.release(
                    name, give_back_slot=ending.give_back_slot, failure=ending.failure
                )
            except Exception as error:  # noqa: BLE001 - reported; tried again next tick
                self._report(error, f"could not release {name}")
                if unavailable_dependency(error) is not None:
                    return False
                continue
            with self._lock:
                if self._unreleased.get(name) is ending:
                    del self._unreleased[name]
            self._outages.up(DATABASE)
        return True

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
