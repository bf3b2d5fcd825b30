"""Rebuilding `bucket.registered` from the `buckets` table when the topic lost it.

The table is the registry of record; the topic is how pollers learn it. The registrar reads
the topic to its end without joining a group, and queues through the outbox the current record
of every bucket the topic lacks or holds stale, and a tombstone for every name it should not
hold. It runs at start, every `RBR_RESEED_INTERVAL` s and after a broker outage (`rbr topics
reseed` by hand); on a topic that already holds the registry it queues nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from prometheus_client import Counter
from sqlalchemy.exc import DBAPIError

from rbr_registrar.store import BucketRepository
from rbr_runtime.kafka.directory import TopicMissing, read_registry
from rbr_runtime.kafka.topics import ensure_topics
from rbr_runtime.retry import Backoff
from rbr_runtime.settings import CommonSettings
from rbr_schemas import BUCKET_REGISTERED, BucketRegistered

log = logging.getLogger(__name__)

RESEED_CHECKS = Counter(
    "rbr_registry_checks_total",
    "Checks that bucket.registered holds the registry, by outcome (in_sync, reseeded, failed).",
    ["outcome"],
)
RESEED_QUEUED = Counter(
    "rbr_registry_reseed_queued_total",
    "bucket.registered messages queued again from the buckets table (record or tombstone).",
    ["kind"],
)
LEADER_RECHECK_SECONDS = 1.0
"""How often a replica that does not relay looks whether it has become the relay."""


@dataclass(frozen=True)
class ReseedPlan:
    """How bucket.registered differs from the buckets table.

    Attributes:
        registered: buckets in the table.
        on_topic: names the topic holds a record for (tombstoned ones not counted).
        topic_missing: the topic does not exist at all.
        missing: buckets the topic holds no record of.
        stale: buckets the topic holds under another id or version (or an invalid record).
        removed: names the topic still holds but the table no longer has.
        waiting: names left alone: their announcement is waiting in the outbox.
    """

    registered: int
    on_topic: int
    topic_missing: bool = False
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)

    @property
    def to_publish(self) -> list[str]:
        """Returns the buckets whose current record must be published again."""
        return [*self.missing, *self.stale]

    @property
    def in_sync(self) -> bool:
        """Tells whether the topic holds the registry (apart from what the outbox sends)."""
        return not (self.missing or self.stale or self.removed)


def plan_reseed(
    registry: Mapping[str, tuple[str, int]],
    topic: Mapping[str, BucketRegistered | None],
    waiting: Collection[str],
    *,
    topic_missing: bool = False,
) -> ReseedPlan:
    """Compares the table with the topic's last record per name.

    Args:
        registry: every bucket's (id, version), by name: the registry of record.
        topic: the last record per name on the topic (None: not a valid event); names whose
            last record is a tombstone are absent.
        waiting: names with bucket.registered messages waiting in the outbox.
        topic_missing: the topic does not exist (then `topic` is empty).
    """
    plan = ReseedPlan(registered=len(registry), on_topic=len(topic), topic_missing=topic_missing)
    for name in sorted({*registry, *topic}):
        if name in waiting:
            plan.waiting.append(name)
        elif name not in registry:
            plan.removed.append(name)
        elif name not in topic:
            plan.missing.append(name)
        elif not _holds(topic[name], registry[name]):
            plan.stale.append(name)
    return plan


def _holds(record: BucketRegistered | None, current: tuple[str, int]) -> bool:
    # Id and version identify what was announced: the metrics a poll refreshes in the table
    # change no version and need no announcement.
    return record is not None and (record.bucket_id, record.version) == current


@dataclass(frozen=True)
class ReseedReport:
    """What a check found, and what it queued (nothing on a dry run)."""

    plan: ReseedPlan
    dry_run: bool
    records_queued: int = 0
    tombstones_queued: int = 0


class RegistryReseeder:
    """Checks bucket.registered against the buckets table and queues what it lacks.

    A component (`run`, `stop`) that checks on the relaying replica; `check` also serves the
    operator API (`rbr topics reseed`) on any replica. Checks never overlap in one process.
    """

    def __init__(
        self,
        settings: CommonSettings,
        repository: BucketRepository,
        *,
        leading: threading.Event,
        on_queued: Callable[[], None],
        interval: float,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        read_timeout: float = 30.0,
    ) -> None:
        """Prepares the checks; run() starts them.

        Args:
            settings: where the broker is.
            repository: the buckets table and its outbox.
            leading: set while this replica relays the outbox (only it checks on its own).
            on_queued: called after a check queued messages (wakes the relay).
            interval: seconds between checks.
            initial_backoff: first pause after a failed check.
            max_backoff: longest pause after failed checks.
            read_timeout: seconds to read the topic to its end before giving up.
        """
        self._settings = settings
        self._repository = repository
        self._leading = leading
        self._on_queued = on_queued
        self._interval = interval
        self._backoff = Backoff(initial_backoff, max_backoff)
        self._read_timeout = read_timeout
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()

    def trigger(self) -> None:
        """Asks for a check as soon as possible (e.g. the broker came back)."""
        self._wake.set()

    def stop(self) -> None:
        """Stops after the check in progress."""
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        """Checks at start, every interval and when triggered, while this replica relays."""
        while not self._stop.is_set():
            if not self._leading.wait(LEADER_RECHECK_SECONDS):
                continue
            self._wake.clear()
            if self._check_in_service():
                self._backoff.succeeded()
                pause = self._interval
            else:
                pause = self._backoff.failed()
            self._wake.wait(pause)

    def _check_in_service(self) -> bool:
        """Runs one check; False (logged) when the broker or the database failed it."""
        try:
            self.check()
        except (KafkaException, TimeoutError, DBAPIError, OSError) as error:
            RESEED_CHECKS.labels("failed").inc()
            log.warning(
                "cannot check that bucket.registered holds the registry: %s: %s; trying again",
                type(error).__name__,
                str(error)[:300],
            )
            return False
        return True

    def check(self, *, dry_run: bool = False) -> ReseedReport:
        """Compares the topic with the table; unless dry_run, queues what the topic lacks.

        Raises:
            KafkaException, TimeoutError: the topic could not be read (or created).
            DBAPIError: the database failed.
        """
        with self._lock:
            report = self._check_locked(dry_run)
        if report.records_queued or report.tombstones_queued:
            self._on_queued()
        return report

    def _check_locked(self, dry_run: bool) -> ReseedReport:
        # Outbox first, topic next, table last: a change committed meanwhile is either
        # waiting in the outbox or newer in the table than on the topic; either way it is
        # never taken for a removal, and at worst its current record is queued once more.
        waiting = self._repository.waiting_announcements()
        topic, topic_missing = self._read_topic(create=not dry_run)
        plan = plan_reseed(
            self._repository.registry_versions(), topic, waiting, topic_missing=topic_missing
        )
        if dry_run or plan.in_sync:
            if not dry_run:
                RESEED_CHECKS.labels("in_sync").inc()
            return ReseedReport(plan, dry_run)
        records, tombstones = self._repository.queue_reseed(plan.to_publish, plan.removed)
        if not (records or tombstones):
            # Each name changed meanwhile: its own outbox row announces it.
            RESEED_CHECKS.labels("in_sync").inc()
            return ReseedReport(plan, dry_run)
        RESEED_CHECKS.labels("reseeded").inc()
        RESEED_QUEUED.labels("record").inc(records)
        RESEED_QUEUED.labels("tombstone").inc(tombstones)
        log.warning(
            "bucket.registered did not hold the registry (%d missing, %d stale, %d removed "
            "but still there%s): queued %d record(s) and %d tombstone(s) again",
            len(plan.missing),
            len(plan.stale),
            len(plan.removed),
            "; the topic did not exist and was created" if topic_missing else "",
            records,
            tombstones,
        )
        return ReseedReport(plan, dry_run, records, tombstones)

    def _read_topic(self, *, create: bool) -> tuple[dict[str, BucketRegistered | None], bool]:
        """Returns the topic's last record per name, and whether the topic was missing."""
        try:
            return read_registry(self._settings, self._read_timeout), False
        except TopicMissing:
            if not create:
                return {}, True
        log.warning("topic %s does not exist; creating it", BUCKET_REGISTERED.name)
        ensure_topics(self._settings, only={BUCKET_REGISTERED.name})
        return {}, True
