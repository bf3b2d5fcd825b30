"""`poller_state`: slot claims, poll outcomes and alert state per bucket (shared by replicas)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, case, or_, select, update
from sqlalchemy.engine import Connection

from rbr_poller.unresponsive import HealthRow
from rbr_runtime.db.engine import insert_ignore
from rbr_runtime.db.tables import extract_cursors, poller_state
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
    bucket_id: str | None = None
    """The registration polled; an outcome of a since removed one is not recorded."""

    @classmethod
    def of(cls, status: BucketStatus) -> Outcome:
        """Returns the outcome of a status event."""
        return cls(
            name=status.name,
            bucket_id=status.bucket_id,
            polled_at=status.polled_at,
            success=status.reachable,
            error_class=status.error_class.value if status.error_class else None,
            error=status.error,
        )


# What a row of a bucket registered anew starts from: nothing of the removed one's state.
_FRESH_STATE: dict[str, Any] = {
    "last_success_at": None,
    "consecutive_failures": 0,
    "last_error_class": None,
    "last_error": None,
    "alert_open": False,
    "alert_id": None,
    "alert_opened_at": None,
    "last_attempt_at": None,
    "polling_since": None,
    "alert_basis": None,
}


class PollerStateStore:
    """Reads and writes `poller_state`.

    Args:
        engine: the database.
        polling_gap: seconds between two recorded polls beyond which polling counts as
            having stopped in between (see `unresponsive.polling_gap`).
    """

    def __init__(self, engine: Engine, polling_gap: float) -> None:
        self.engine = engine
        self.polling_gap = polling_gap

    def ensure(self, buckets: Mapping[str, str], now: datetime) -> None:
        """Creates or renews the state of the buckets (name -> bucket id).

        A bucket seen for the first time gets a row (first_seen_at = now). A row of another
        registration of that name (the bucket was removed and registered again) is reset, so
        the new bucket inherits no open alert, failures or successes of the old one.
        """
        names = sorted(buckets)
        if not names:
            return
        with self.engine.begin() as connection:
            for start in range(0, len(names), CHUNK):
                chunk = names[start : start + CHUNK]
                rows = [
                    {
                        "name": name,
                        "first_seen_at": now,
                        "last_poll_slot": -1,
                        "bucket_id": buckets[name],
                    }
                    for name in chunk
                ]
                connection.execute(insert_ignore(connection, poller_state), rows)
                self._renew(connection, {name: buckets[name] for name in chunk}, now)

    def _renew(self, connection: Connection, buckets: Mapping[str, str], now: datetime) -> None:
        stored = connection.execute(
            select(poller_state.c.name, poller_state.c.bucket_id).where(
                poller_state.c.name.in_(list(buckets))
            )
        )
        for name, bucket_id in stored:
            wanted = buckets[name]
            if bucket_id == wanted:
                continue
            # A row from before bucket ids were kept is adopted as it is; another id's reset.
            values: dict[str, Any] = {"bucket_id": wanted}
            if bucket_id is not None:
                values |= {**_FRESH_STATE, "first_seen_at": now}
            connection.execute(
                update(poller_state).where(poller_state.c.name == name).values(**values)
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
        """Records poll outcomes: a success resets the failure count, a failure adds one.

        Every outcome also records the attempt; one made more than the polling gap after the
        previous starts a new run of polls (`polling_since`). Outcomes of another
        registration than the row's (a bucket since removed) are ignored.
        """
        with self.engine.begin() as connection:
            for outcome in outcomes:
                self._record_attempt(connection, outcome)
                self._record_result(connection, outcome)

    def _of(self, outcome: Outcome) -> ColumnElement[bool]:
        same_name = poller_state.c.name == outcome.name
        if outcome.bucket_id is None:
            return same_name
        return same_name & or_(
            poller_state.c.bucket_id.is_(None), poller_state.c.bucket_id == outcome.bucket_id
        )

    def _record_attempt(self, connection: Connection, outcome: Outcome) -> None:
        column = poller_state.c
        polled_at = outcome.polled_at
        gap_before = polled_at - timedelta(seconds=self.polling_gap)
        resumed = or_(
            column.last_attempt_at.is_(None),
            column.polling_since.is_(None),
            column.last_attempt_at < gap_before,
        )
        newer = or_(column.last_attempt_at.is_(None), column.last_attempt_at < polled_at)
        # MySQL assigns left to right, each seeing the columns already set: polling_since
        # must be decided from the previous last_attempt_at, so it is set first.
        connection.execute(
            update(poller_state)
            .where(self._of(outcome))
            .ordered_values(
                (column.polling_since, case((resumed, polled_at), else_=column.polling_since)),
                (column.last_attempt_at, case((newer, polled_at), else_=column.last_attempt_at)),
            )
        )

    def _record_result(self, connection: Connection, outcome: Outcome) -> None:
        if outcome.success:
            connection.execute(
                update(poller_state)
                .where(
                    self._of(outcome),
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
            return
        connection.execute(
            update(poller_state)
            .where(self._of(outcome))
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
                        poller_state.c.last_attempt_at,
                        poller_state.c.polling_since,
                        poller_state.c.alert_basis,
                    ).where(poller_state.c.name.in_(chunk))
                )
                rows.extend(HealthRow(**dict(row._mapping)) for row in result)
        return rows

    def upload_rows(self, names: Iterable[str]) -> list[HealthRow]:
        """Returns the health of s3-drop buckets as their uploads show it.

        The evidence is the log-extractor's (`extract_cursors`, read only): the newest upload
        its latest listing of the bucket's folders showed (as `last_success_at`), that
        listing (as `last_attempt_at`) and the first one (as `first_seen_at`); the alert's
        state is the poller's own.
        """
        wanted = sorted(set(names))
        state, cursors = poller_state.c, extract_cursors.c
        joined = poller_state.outerjoin(extract_cursors, cursors.name == state.name)
        rows: list[HealthRow] = []
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start : start + CHUNK]
                result = connection.execute(
                    select(
                        state.name,
                        state.first_seen_at,
                        state.alert_open,
                        state.alert_id,
                        state.alert_opened_at,
                        state.alert_basis,
                        cursors.last_upload_at,
                        cursors.uploads_checked_at,
                        cursors.uploads_first_checked_at,
                        cursors.consecutive_failures,
                        cursors.last_error,
                    )
                    .select_from(joined)
                    .where(state.name.in_(chunk))
                )
                rows.extend(_upload_row(row) for row in result)
        return rows

    def open_alert(self, name: str, alert_id: str, now: datetime, basis: str | None = None) -> None:
        """Records that the bucket's alert fired (after it was published), and on what basis."""
        with self.engine.begin() as connection:
            connection.execute(
                update(poller_state)
                .where(poller_state.c.name == name, poller_state.c.alert_open.is_(False))
                .values(alert_open=True, alert_id=alert_id, alert_opened_at=now, alert_basis=basis)
            )

    def close_alert(self, name: str, alert_id: str) -> None:
        """Records that the bucket's alert resolved (after it was published)."""
        with self.engine.begin() as connection:
            connection.execute(
                update(poller_state)
                .where(poller_state.c.name == name, poller_state.c.alert_id == alert_id)
                .values(alert_open=False)
            )


def _upload_row(row: Any) -> HealthRow:
    return HealthRow(
        name=row.name,
        first_seen_at=row.uploads_first_checked_at or row.first_seen_at,
        last_success_at=row.last_upload_at,
        consecutive_failures=row.consecutive_failures or 0,
        last_error_class="extraction" if row.last_error else None,
        last_error=row.last_error,
        alert_open=row.alert_open,
        alert_id=row.alert_id,
        alert_opened_at=row.alert_opened_at,
        last_attempt_at=row.uploads_checked_at,
        alert_basis=row.alert_basis,
    )
