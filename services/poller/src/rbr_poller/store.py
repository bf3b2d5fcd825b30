"""`poller_state`: slot claims, poll outcomes and alert state per bucket.

The table is shared by every poller replica and survives rebalances and restarts:

* a slot claim is a conditional update (`last_poll_slot < slot`), so whichever replica owns
  a bucket, and however often ownership moves, each bucket is polled at most once per slot;
* poll outcomes (last success, consecutive failures, last error) feed the health decision;
* `alert_open`/`alert_id` remember an open unresponsive alert, so it never fires twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, or_, select, update

from rbr_poller.health import HealthRow
from rbr_runtime.db.engine import insert_ignore
from rbr_runtime.db.tables import poller_state
from rbr_schemas import BucketStatus

CHUNK = 500


@dataclass(frozen=True)
class Outcome:
    """What one poll means for a bucket's state."""

    name: str
    polled_at: datetime
    success: bool
    error_class: str | None = None
    error: str | None = None

    @classmethod
    def of(cls, status: BucketStatus) -> Outcome:
        """Returns the outcome of a status event."""
        return cls(
            name=status.name,
            polled_at=status.polled_at,
            success=status.reachable,
            error_class=status.error_class.value if status.error_class else None,
            error=status.error,
        )


class PollerStateStore:
    """Reads and writes `poller_state`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def ensure(self, names: Iterable[str], now: datetime) -> None:
        """Creates the state of buckets seen for the first time (first_seen_at = now)."""
        rows = [
            {"name": name, "first_seen_at": now, "last_poll_slot": -1}
            for name in sorted(set(names))
        ]
        if not rows:
            return
        with self.engine.begin() as connection:
            for start in range(0, len(rows), CHUNK):
                connection.execute(
                    insert_ignore(connection, poller_state), rows[start : start + CHUNK]
                )

    def claim(self, names: Sequence[str], slot: int, now: datetime) -> list[str]:
        """Claims the slot for each bucket; returns those this replica got.

        A bucket whose slot another replica (or an earlier owner) already claimed is left
        out. Names are claimed in sorted order so concurrent claims cannot deadlock.
        """
        claimed = []
        with self.engine.begin() as connection:
            for name in sorted(names):
                result = connection.execute(
                    update(poller_state)
                    .where(poller_state.c.name == name, poller_state.c.last_poll_slot < slot)
                    .values(last_poll_slot=slot, last_poll_at=now)
                )
                if result.rowcount == 1:
                    claimed.append(name)
        return claimed

    def record(self, outcomes: Sequence[Outcome]) -> None:
        """Records poll outcomes: a success resets the failure count, a failure adds one."""
        with self.engine.begin() as connection:
            for outcome in outcomes:
                if outcome.success:
                    connection.execute(
                        update(poller_state)
                        .where(
                            poller_state.c.name == outcome.name,
                            or_(
                                poller_state.c.last_success_at.is_(None),
                                poller_state.c.last_success_at < outcome.polled_at,
                            ),
                        )
                        .values(
                            last_success_at=outcome.polled_at,
                            consecutive_failures=0,
                            last_error_class=None,
                            last_error=None,
                        )
                    )
                    continue
                connection.execute(
                    update(poller_state)
                    .where(poller_state.c.name == outcome.name)
                    .values(
                        consecutive_failures=poller_state.c.consecutive_failures + 1,
                        last_error_class=outcome.error_class,
                        last_error=(outcome.error or "")[:500] or None,
                    )
                )

    def health_rows(self, names: Iterable[str]) -> list[HealthRow]:
        """Returns the health state of the named buckets that have one."""
        wanted = sorted(set(names))
        rows: list[HealthRow] = []
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start : start + CHUNK]
                result = connection.execute(
                    select(
                        poller_state.c.name,
                        poller_state.c.first_seen_at,
                        poller_state.c.last_success_at,
                        poller_state.c.consecutive_failures,
                        poller_state.c.last_error_class,
                        poller_state.c.last_error,
                        poller_state.c.alert_open,
                        poller_state.c.alert_id,
                        poller_state.c.alert_opened_at,
                    ).where(poller_state.c.name.in_(chunk))
                )
                rows.extend(HealthRow(**dict(row._mapping)) for row in result)
        return rows

    def open_alert(self, name: str, alert_id: str, now: datetime) -> None:
        """Records that the bucket's alert fired (after it was published)."""
        with self.engine.begin() as connection:
            connection.execute(
                update(poller_state)
                .where(poller_state.c.name == name, poller_state.c.alert_open.is_(False))
                .values(alert_open=True, alert_id=alert_id, alert_opened_at=now)
            )

    def close_alert(self, name: str, alert_id: str) -> None:
        """Records that the bucket's alert resolved (after it was published)."""
        with self.engine.begin() as connection:
            connection.execute(
                update(poller_state)
                .where(poller_state.c.name == name, poller_state.c.alert_id == alert_id)
                .values(alert_open=False)
            )
