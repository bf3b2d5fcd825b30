"""Pending registrations nobody approved within `RBR_PENDING_EXPIRY` seconds expire.

They are removed as an operator's removal does (row deleted, tombstone queued through the
outbox, one transaction), logged and counted in `rbr_pending_expired_total`; one replica runs
each interval's check (claimed in `task_runs`) and re-checks each row under its lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from prometheus_client import Counter
from sqlalchemy import delete

from rbr_registrar.store import BucketRepository
from rbr_runtime.db.tables import task_runs
from rbr_runtime.schedule import TaskClaims, slot_of
from rbr_schemas import utcnow

log = logging.getLogger(__name__)

TASK = "registrar.pending_expiry"
BATCH = 200
CLAIMS_KEPT = timedelta(days=7)
"""How long this task's claims stay in `task_runs` (one per interval) before being pruned."""

PENDING_EXPIRED = Counter(
    "rbr_pending_expired_total",
    "Pending registrations removed because no operator approved them within RBR_PENDING_EXPIRY.",
)


class PendingExpiry:
    """Removes pending registrations older than the expiry, once per interval across replicas."""

    def __init__(
        self,
        repository: BucketRepository,
        claims: TaskClaims,
        *,
        expiry: float,
        interval: float,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._repository = repository
        self._claims = claims
        self._expiry = timedelta(seconds=expiry)
        self._interval = interval
        self._on_commit = on_commit

    def run_once(self, now: datetime | None = None) -> int | None:
        """Runs this interval's check if no replica claimed it; returns how many expired.

        None when another replica has the interval's run (or expiry is off).
        """
        if not self._expiry:
            return None
        now = now or utcnow()
        slot = str(slot_of(now, self._interval))
        if not self._claims.claim(TASK, slot):
            return None
        try:
            expired = self.expire(now)
        except Exception:
            self._claims.release(TASK, slot)
            raise
        self._claims.finish(TASK, slot, "ok", f"{expired} pending registrations expired")
        self._prune_claims(now)
        return expired

    def expire(self, now: datetime) -> int:
        """Removes every pending registration made before `now - expiry`; returns how many."""
        cutoff = now - self._expiry
        total = 0
        while True:
            removed = self._repository.expire_pending(cutoff, BATCH)
            if removed:
                self._on_commit()
            for row in removed:
                log.info(
                    "pending bucket %s expired: registered %s from %s, never approved within "
                    "RBR_PENDING_EXPIRY (%ds); removed",
                    row.name,
                    row.registered_at.isoformat(timespec="seconds"),
                    row.ip_address,
                    self._expiry.total_seconds(),
                    extra={"bucket": row.name},
                )
            PENDING_EXPIRED.inc(len(removed))
            total += len(removed)
            if len(removed) < BATCH:
                return total

    def _prune_claims(self, now: datetime) -> None:
        with self._repository.engine.begin() as connection:
            connection.execute(
                delete(task_runs).where(
                    task_runs.c.task == TASK, task_runs.c.claimed_at < now - CLAIMS_KEPT
                )
            )
