"""`poller_state`: slot claims, poll outcomes and alert state per bucket (shared by replicas)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, Engine, Insert, select, update
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection

from rbr_poller.unresponsive import HealthRow
from rbr_runtime.db.engine import insert_ignore, is_mysql
from rbr_runtime.db.tables import extract_cursors, poller_state
from rbr_schemas import BucketStatus

CHUNK = 500


class ClaimRaced(RuntimeError):
    """Fewer slot claims were made than rows locked: the claim is rolled back, retried later."""


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


@dataclass(frozen=True)
class PollRecord:
    """What poll outcomes change in a bucket's `poller_state` row."""

    name: str
    bucket_id: str | None
    last_attempt_at: datetime | None
    polling_since: datetime | None
    last_success_at: datetime | None
    consecutive_failures: int
    last_error_class: str | None
    last_error: str | None

    @staticmethod
    def columns() -> list[Column[Any]]:
        """Returns the columns of `poller_state` a record is read from."""
        return [poller_state.c[name] for name in PollRecord.__dataclass_fields__]

    @classmethod
    def of(cls, row: Any) -> PollRecord:
        """Returns the record of a row read with `columns()`."""
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})

    def after(self, outcome: Outcome, polling_gap: float) -> PollRecord:
        """Returns the record once this outcome is recorded.

        The attempt always; then the success (if newer than the last one) or the failure. An
        outcome of another registration than the row's leaves it unchanged. These are the
        rules the per-outcome UPDATEs had (a test holds the two together).
        """
        if outcome.bucket_id is not None and self.bucket_id not in (None, outcome.bucket_id):
            return self
        polled_at = outcome.polled_at
        last_attempt = self.last_attempt_at
        resumed = (
            last_attempt is None
            or self.polling_since is None
            or last_attempt < polled_at - timedelta(seconds=polling_gap)
        )
        attempted = replace(
            self,
            polling_since=polled_at if resumed else self.polling_since,
            last_attempt_at=polled_at
            if last_attempt is None or last_attempt < polled_at
            else last_attempt,
        )
        if not outcome.success:
            return replace(
                attempted,
                consecutive_failures=self.consecutive_failures + 1,
                last_error_class=outcome.error_class,
                last_error=(outcome.error or "")[:500] or None,
            )
        if self.last_success_at is not None and self.last_success_at >= polled_at:
            return attempted
        return replace(
            attempted,
            last_success_at=polled_at,
            consecutive_failures=0,
            last_error_class=None,
            last_error=None,
        )


def _record_upsert(connection: Connection) -> Insert:
    """Returns the upsert writing recorded outcomes back (the rows exist: it only updates)."""
    written = [
        name for name in PollRecord.__dataclass_fields__ if name not in ("name", "bucket_id")
    ]
    if is_mysql(connection):
        statement = mysql.insert(poller_state)
        return statement.on_duplicate_key_update(
            {name: statement.inserted[name] for name in written}
        )
    lite = sqlite.insert(poller_state)
    return lite.on_conflict_do_update(
        index_elements=["name"], set_={name: lite.excluded[name] for name in written}
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
        out. Per chunk of names, the claimable rows are locked in name order (so concurrent
        claims cannot deadlock) and claimed with one UPDATE: two statements per chunk, not
        one per bucket.
        """
        claimed: list[str] = []
        wanted = sorted(set(names))
        with self.engine.begin() as connection:
            for start in range(0, len(wanted), CHUNK):
                claimed.extend(
                    self._claim_chunk(connection, wanted[start : start + CHUNK], slot, now)
                )
        return claimed

    def _claim_chunk(
        self, connection: Connection, names: list[str], slot: int, now: datetime
    ) -> list[str]:
        claimable = poller_state.c.name.in_(names) & (poller_state.c.last_poll_slot < slot)
        locked = connection.execute(
            select(poller_state.c.name)
            .where(claimable)
            .order_by(poller_state.c.name)
            .with_for_update()
        )
        found = [name for (name,) in locked]
        if not found:
            return []
        result = connection.execute(
            update(poller_state)
            .where(poller_state.c.name.in_(found), poller_state.c.last_poll_slot < slot)
            .values(last_poll_slot=slot, last_poll_at=now)
        )
        if result.rowcount != len(found):
            # Only possible where SELECT ... FOR UPDATE locks nothing (SQLite shares its file
            # with another writer): roll back rather than report claims not made.
            raise ClaimRaced(f"{len(found)} slot claims locked, {result.rowcount} made")
        return found

    def record(self, outcomes: Sequence[Outcome]) -> None:
        """Records poll outcomes: a success resets the failure count, a failure adds one.

        Every outcome also records the attempt; one made more than the polling gap after the
        previous starts a new run of polls (`polling_since`). Outcomes of another
        registration than the row's (a bucket since removed) are ignored.

        Per chunk of buckets: their rows are read and locked (one SELECT ... FOR UPDATE),
        the outcomes applied in order (`PollRecord.after`), and the changed rows written back
        with one multi-row upsert; not two UPDATEs per outcome.
        """
        by_name: dict[str, list[Outcome]] = {}
        for outcome in outcomes:
            by_name.setdefault(outcome.name, []).append(outcome)
        names = sorted(by_name)
        with self.engine.begin() as connection:
            for start in range(0, len(names), CHUNK):
                chunk = names[start : start + CHUNK]
                self._record_chunk(connection, {name: by_name[name] for name in chunk})

    def _record_chunk(self, connection: Connection, outcomes: Mapping[str, list[Outcome]]) -> None:
        rows = connection.execute(
            select(poller_state.c.first_seen_at, *PollRecord.columns())
            .where(poller_state.c.name.in_(list(outcomes)))
            .order_by(poller_state.c.name)
            .with_for_update()
        )
        changed = []
        for row in rows:
            stored = PollRecord.of(row)
            record = stored
            for outcome in outcomes[record.name]:
                record = record.after(outcome, self.polling_gap)
            if record != stored:
                changed.append({"first_seen_at": row.first_seen_at, **asdict(record)})
        if changed:
            connection.execute(_record_upsert(connection), changed)

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
