"""The `buckets` table and its transactional outbox.

Every change to a bucket is written in one transaction with the `bucket.registered` message
that announces it (in the registrar's outbox, `rbr_runtime.outbox`), so a change is announced
if and only if it was committed; the outbox relay publishes the messages in order.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Engine, and_, bindparam, delete, func, or_, select, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Select

from rbr_registrar.domain import (
    BucketRow,
    Decision,
    Registration,
    S3Config,
    SelfUpdate,
    Verdict,
    decide_approval,
    decide_delivery_mode,
    decide_disable,
    decide_registration,
    decide_rekey,
    decide_s3_source,
    decide_self_update,
    registration_message,
    removal_resolution,
)
from rbr_registrar.lineage import CROWDED_HOST, HOST_ROW_COLUMNS, HostRow, Lineaged, replaced_bucket
from rbr_registrar.operator.views import BucketFilter
from rbr_runtime.db.bulk import insert_rows
from rbr_runtime.db.engine import insert_ignore
from rbr_runtime.db.tables import bucket_aliases, bucket_status_history, buckets, drop_sources
from rbr_runtime.outbox import Outbox, OutboxMessage
from rbr_runtime.retry import retry_outages
from rbr_runtime.secrets import StoredToken, TokenDecryptionError, TokenVault
from rbr_schemas import ALERTS, BUCKET_REGISTERED, BucketState, BucketStatus, DeliveryMode, utcnow

log = logging.getLogger(__name__)

T = TypeVar("T")
OUTBOX = Outbox("registrar")
WRITE_ATTEMPTS = 5
DEFAULT_REPLACEMENT_SILENCE = 900.0
Host = tuple[str, str | None]
"""A registration's (ip_address, operating_system)."""

# The statements of every registration's transaction, built once: each execution then finds
# its compiled form in the engine's cache without building and hashing a new statement.
_LOCK_BY_NAME = (
    select(buckets)
    .where(buckets.c.name.in_(bindparam("names", expanding=True)))
    .order_by(buckets.c.name)
    .with_for_update()
)
_LOCK_ALIASES = (
    select(bucket_aliases.c.name, bucket_aliases.c.bucket_id)
    .where(bucket_aliases.c.name.in_(bindparam("names", expanding=True)))
    .with_for_update()
)
_LOCK_BY_ID = (
    select(buckets)
    .where(buckets.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(buckets.c.name)
    .with_for_update()
)


def _host_rows_query() -> Select[Any]:
    """Each host's count of registrations, with its rows' lineage columns if not crowded.

    One round trip: a crowded host comes back as one row with no bucket columns.
    """
    host_of = tuple_(buckets.c.ip_address, buckets.c.operating_system)
    counted = (
        select(buckets.c.ip_address, buckets.c.operating_system, func.count().label("n"))
        .where(host_of.in_(bindparam("hosts", expanding=True)))
        .group_by(buckets.c.ip_address, buckets.c.operating_system)
        .subquery("counted")
    )
    rows = buckets.alias("host_bucket")
    joined = counted.outerjoin(
        rows,
        and_(
            rows.c.ip_address == counted.c.ip_address,
            rows.c.operating_system == counted.c.operating_system,
            counted.c.n <= CROWDED_HOST,
        ),
    )
    wanted = [rows.c[name] for name in HOST_ROW_COLUMNS if name not in _HOST_KEY]
    return select(
        counted.c.ip_address, counted.c.operating_system, counted.c.n, *wanted
    ).select_from(joined)


_HOST_KEY = ("ip_address", "operating_system")
_HOST_ROWS = _host_rows_query()
_NULL_UNLESS_GIVEN = frozenset(
    column.name
    for column in buckets.columns
    if column.nullable and column.default is None and column.server_default is None
)
"""Columns an INSERT that leaves them out stores as NULL."""


def _without_nulls(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Returns the rows without the columns NULL in all of them: stored NULL all the same.

    A new registration leaves half of a bucket's columns NULL (its polls, its S3 source),
    and every value sent is escaped and parsed, row by row.
    """
    absent = {name for name in _NULL_UNLESS_GIVEN if all(row.get(name) is None for row in rows)}
    if not absent:
        return rows
    return [{name: value for name, value in row.items() if name not in absent} for row in rows]


REPORTED_FIELDS = (
    "operating_system",
    "cpu_usage",
    "memory_usage",
    "disk_space",
    "uptime",
    "connections",
)


def with_retries(action: Callable[[], T], attempts: int = WRITE_ATTEMPTS) -> T:
    """Runs a transaction, again after a deadlock or a lost connection, or a lost unique race.

    A lost unique-key race (two replicas inserting the same new name) is settled by the time
    the database reports it: the winner has committed. So it is decided again once, at
    once: the second attempt sees the winner's row (and answers, e.g., a conflict). Another
    IntegrityError is no race and no outage: it propagates without more tries or pauses.
    Outages (a deadlock, a lost connection) are retried with growing pauses
    (`rbr_runtime.retry`); other errors, and the last failure, propagate.
    """
    try:
        return _through_outages(action, attempts)
    except IntegrityError as error:
        log.info("transaction lost a unique-key race; deciding again: %s", type(error).__name__)
    return _through_outages(action, attempts)


def _through_outages(action: Callable[[], T], attempts: int) -> T:
    return retry_outages(action, attempts=attempts, initial=0.02, maximum=0.32)


@dataclass(frozen=True)
class StatusUpdate:
    """What a batch of `bucket.status` events says about one bucket."""

    latest: BucketStatus
    latest_success: BucketStatus | None


class TokenState(StrEnum):
    """How a bucket's stored token relates to the configured secret keys."""

    CURRENT = "current"
    STALE = "stale"
    """Its ciphertext or hash was made with an older key: to be stored again."""
    UNDECRYPTABLE = "undecryptable"
    """No configured key decrypts it: it cannot be stored again (nor polled)."""


def token_state(vault: TokenVault, row: BucketRow) -> tuple[TokenState, StoredToken | None]:
    """Returns the state of a bucket's stored token, and the token restored if stale."""
    try:
        restored = vault.restored(row.token_ciphertext, row.token_hash)
    except TokenDecryptionError:
        return TokenState.UNDECRYPTABLE, None
    if restored is None:
        return TokenState.CURRENT, None
    return TokenState.STALE, restored


@dataclass
class RekeyPage:
    """What re-keying one page of buckets found and did."""

    checked: int = 0
    current: int = 0
    stale: int = 0
    """Found under an older key (on a dry run: would be stored again)."""
    rekeyed: int = 0
    """Stored again under the current key by this call (none on a dry run)."""
    undecryptable: list[str] = field(default_factory=list)
    next_after: str | None = None


class BucketRepository:
    """Reads and writes buckets; every write also queues its announcement in the outbox."""

    def __init__(
        self, engine: Engine, replacement_silence: float = DEFAULT_REPLACEMENT_SILENCE
    ) -> None:
        self.engine = engine
        self.replacement_silence = timedelta(seconds=replacement_silence)
        """How long a bucket must show no sign of life to be replaced (`lineage.py`)."""

    # -- registrations -------------------------------------------------------------------------

    def register(self, registrations: Sequence[Registration]) -> list[Decision]:
        """Applies registrations in one transaction (group commit); one decision each.

        Registrations of the same name in one batch apply in order. Raises what the database
        raised when the transaction could not be committed after retries: then none of them
        is stored.
        """
        return with_retries(lambda: self._register_once(registrations))

    def _register_once(self, registrations: Sequence[Registration]) -> list[Decision]:
        now = utcnow()
        with self.engine.begin() as connection:
            names = sorted({r.name for r in registrations})
            current = self._lock_rows(connection, names)
            merged_into = self._lock_merged_into(connection, [n for n in names if n not in current])
            inserted: dict[str, BucketRow] = {}
            changed: dict[str, BucketRow] = {}
            announced: list[BucketRow] = []
            decisions = []
            for submitted in registrations:
                # The name of a registration merged into a bucket designates that bucket: the
                # same token updates it, another is a conflict like any name taken.
                target = merged_into.get(submitted.name)
                registration = submitted
                if target is not None:
                    registration = replace(submitted, name=target.name)
                    current.setdefault(target.name, target)
                decision = decide_registration(
                    current.get(registration.name), registration, str(uuid.uuid4()), now
                )
                decisions.append(decision)
                if not decision.writes or decision.row is None:
                    continue
                row = decision.row
                current[row.name] = row
                announced.append(row)
                new = row.name in inserted or decision.verdict is Verdict.CREATED
                (inserted if new else changed)[row.name] = row
            if inserted:
                rows = self._mark_replacements(connection, list(inserted.values()), now)
                insert_rows(connection, buckets, _without_nulls([r.values() for r in rows]))
            for row in changed.values():
                self._write_row(connection, row)
            self._announce(connection, announced, now)
        return decisions

    # -- a bucket's own update -------------------------------------------------------------------

    def find_by_name(self, name: str) -> BucketRow | None:
        """Returns the bucket with that name, if registered."""
        with self.engine.connect() as connection:
            row = connection.execute(select(buckets).where(buckets.c.name == name)).first()
        return BucketRow.from_mapping(row._mapping) if row else None

    def self_update(
        self, name: str, authorised: Callable[[BucketRow], bool], update_: SelfUpdate
    ) -> Decision | None:
        """Applies a bucket's own update if `authorised(row)`; None if unknown or refused."""
        return with_retries(lambda: self._self_update_once(name, authorised, update_))

    def _self_update_once(
        self, name: str, authorised: Callable[[BucketRow], bool], update_: SelfUpdate
    ) -> Decision | None:
        now = utcnow()
        with self.engine.begin() as connection:
            row = self._lock_rows(connection, [name]).get(name)
            if row is None or not authorised(row):
                return None
            decision = decide_self_update(row, update_, now)
            self._write_decision(connection, decision, now)
        return decision

    # -- operator actions --------------------------------------------------------------------------

    def approve(self, name: str) -> Decision | None:
        """Makes a bucket active; None if there is no such bucket."""
        return with_retries(lambda: self._operator_change(name, decide_approval))

    def disable(self, name: str) -> Decision | None:
        """Disables a bucket; None if there is no such bucket."""
        return with_retries(lambda: self._operator_change(name, decide_disable))

    def set_delivery_mode(self, name: str, mode: DeliveryMode) -> Decision | None:
        """Sets the delivery mode an operator chose; None if there is no such bucket."""
        return with_retries(
            lambda: self._operator_change(
                name, lambda row, now: decide_delivery_mode(row, mode, now)
            )
        )

    def set_s3_source(self, name: str, s3: S3Config | None) -> Decision | None:
        """Sets or removes a bucket's own S3 source; None if there is no such bucket."""
        return with_retries(
            lambda: self._operator_change(name, lambda row, now: decide_s3_source(row, s3, now))
        )

    def _operator_change(
        self, name: str, decide: Callable[[BucketRow, datetime], Decision]
    ) -> Decision | None:
        now = utcnow()
        with self.engine.begin() as connection:
            row = self._lock_rows(connection, [name]).get(name)
            if row is None:
                return None
            decision = decide(row, now)
            self._write_decision(connection, decision, now)
        return decision

    def remove(self, name: str) -> BucketRow | None:
        """Deletes a bucket and queues its tombstone; returns what was removed, if anything."""
        return with_retries(lambda: self._remove_once(name))

    def _remove_once(self, name: str) -> BucketRow | None:
        now = utcnow()
        with self.engine.begin() as connection:
            row = self._lock_rows(connection, [name]).get(name)
            if row is None:
                return None
            self.delete_bucket(connection, row, now)
        return row

    def delete_bucket(
        self, connection: Connection, row: BucketRow, now: datetime, *, resolve_alert: bool = True
    ) -> None:
        """Deletes a locked bucket and the names merged into it; queues its tombstone.

        Its drop folders are unclaimed again (an operator may adopt them elsewhere). With
        `resolve_alert`, also queues the resolve of its unresponsive alert (see
        `removal_resolution`); a bucket that was never active was never polled, so it has
        none to resolve.
        """
        connection.execute(delete(buckets).where(buckets.c.id == row.id))
        connection.execute(delete(bucket_aliases).where(bucket_aliases.c.bucket_id == row.id))
        connection.execute(
            update(drop_sources)
            .where(drop_sources.c.bucket_id == row.id)
            .values(bucket_id=None, linked_by=None, linked_at=None)
        )
        queued = [OutboxMessage(BUCKET_REGISTERED.name, row.name, None)]
        if resolve_alert:
            alert_key, resolution = removal_resolution(row, now)
            queued.append(OutboxMessage(ALERTS.name, alert_key, resolution))
        OUTBOX.add(connection, queued, now)

    # -- pending registrations nobody approved -------------------------------------------------

    def expire_pending(self, cutoff: datetime, limit: int) -> list[BucketRow]:
        """Removes up to `limit` pending buckets registered before cutoff; returns them.

        The candidates are read without locks, then locked and checked again (an operator
        may have approved one meanwhile) and removed, each with its tombstone, in one
        transaction.
        """
        query = (
            select(buckets.c.name)
            .where(buckets.c.state == BucketState.PENDING.value, buckets.c.registered_at < cutoff)
            .order_by(buckets.c.registered_at)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            names = sorted(connection.execute(query).scalars())
        if not names:
            return []
        return with_retries(lambda: self._expire_once(names, cutoff))

    def _expire_once(self, names: Sequence[str], cutoff: datetime) -> list[BucketRow]:
        now = utcnow()
        with self.engine.begin() as connection:
            expired = [
                row
                for row in self._lock_rows(connection, names).values()
                if row.state == BucketState.PENDING and row.registered_at < cutoff
            ]
            for row in expired:
                self.delete_bucket(connection, row, now, resolve_alert=False)
        return expired

    # -- re-keying (secret key rotation) ---------------------------------------------------------

    def rekey(self, vault: TokenVault, after: str | None, limit: int, dry_run: bool) -> RekeyPage:
        """Stores the tokens of one page of buckets (by name) again under the current key.

        The page is read without locks and checked; only the stale buckets are then locked,
        checked again (a registration may have stored one again meanwhile) and written, in
        one transaction, each as a new version queued in the outbox like any update. So a
        call holds at most `limit` row locks, briefly, and the fleet is done page by page.
        """
        rows = self._page(after, limit)
        page = RekeyPage(
            checked=len(rows), next_after=rows[-1].name if len(rows) == limit else None
        )
        stale: list[str] = []
        for row in rows:
            state, _ = token_state(vault, row)
            if state is TokenState.UNDECRYPTABLE:
                page.undecryptable.append(row.name)
            elif state is TokenState.STALE:
                stale.append(row.name)
        page.stale = len(stale)
        page.current = page.checked - page.stale - len(page.undecryptable)
        if stale and not dry_run:
            page.rekeyed = with_retries(lambda: self._rekey_once(vault, stale))
        return page

    def _page(self, after: str | None, limit: int) -> list[BucketRow]:
        query = select(buckets).order_by(buckets.c.name).limit(limit)
        if after is not None:
            query = query.where(buckets.c.name > after)
        with self.engine.connect() as connection:
            return [BucketRow.from_mapping(r._mapping) for r in connection.execute(query)]

    def _rekey_once(self, vault: TokenVault, names: Sequence[str]) -> int:
        now = utcnow()
        written: list[BucketRow] = []
        with self.engine.begin() as connection:
            for row in self._lock_rows(connection, names).values():
                state, restored = token_state(vault, row)
                if state is not TokenState.STALE or restored is None:
                    continue  # stored again (or removed, or changed) since the page was read
                decision = decide_rekey(row, restored.token_hash, restored.ciphertext, now)
                if decision.verdict is Verdict.UPDATED and decision.row is not None:
                    self._write_row(connection, decision.row)
                    written.append(decision.row)
            self._announce(connection, written, now)
        return len(written)

    # -- reseeding bucket.registered (reseed.py) ---------------------------------------------------

    def registry_versions(self) -> dict[str, tuple[str, int]]:
        """Returns every bucket's (id, version) by name: what bucket.registered must hold."""
        query = select(buckets.c.name, buckets.c.id, buckets.c.version)
        with self.engine.connect() as connection:
            return {row.name: (row.id, int(row.version)) for row in connection.execute(query)}

    def waiting_announcements(self) -> set[str]:
        """Returns the names whose bucket.registered messages wait in the outbox."""
        with self.engine.connect() as connection:
            return self._waiting(connection, None)

    def queue_reseed(
        self, publish: Sequence[str], tombstone: Sequence[str], batch: int = 500
    ) -> tuple[int, int]:
        """Queues buckets' current records and removed names' tombstones in the outbox.

        Each batch locks its bucket rows and checks again, in the transaction that writes
        the outbox, that nothing is waiting there for the name (a change committed since
        the caller looked is published by its own outbox row) and, for a tombstone, that
        the name is still not registered. Any later change locks the row after this
        transaction, so its outbox row comes after: an older version never overtakes a
        newer one. Returns (records queued, tombstones queued).
        """
        published = tombstoned = 0
        for start in range(0, max(len(publish), len(tombstone)), batch):
            chunk = partial(
                self._reseed_once, publish[start : start + batch], tombstone[start : start + batch]
            )
            records, tombstones = with_retries(chunk)
            published += records
            tombstoned += tombstones
        return published, tombstoned

    def _reseed_once(self, publish: Sequence[str], tombstone: Sequence[str]) -> tuple[int, int]:
        now = utcnow()
        names = sorted({*publish, *tombstone})
        with self.engine.begin() as connection:
            rows = self._lock_rows(connection, names)
            waiting = self._waiting(connection, names)
            announced = [rows[n] for n in publish if n in rows and n not in waiting]
            removed = [n for n in tombstone if n not in rows and n not in waiting]
            self._announce(connection, announced, now)
            tombstones = [OutboxMessage(BUCKET_REGISTERED.name, name, None) for name in removed]
            OUTBOX.add(connection, tombstones, now)
        return len(announced), len(removed)

    def _waiting(self, connection: Connection, names: Sequence[str] | None) -> set[str]:
        return OUTBOX.waiting_keys(connection, BUCKET_REGISTERED.name, names)

    # -- listing ---------------------------------------------------------------------------------

    def list_buckets(
        self, where: BucketFilter, after: str | None, limit: int
    ) -> tuple[list[BucketRow], int]:
        """Returns a page of buckets ordered by name, and how many match in all."""
        conditions = []
        if where.state is not None:
            conditions.append(buckets.c.state == where.state.value)
        if where.mode is not None:
            conditions.append(buckets.c.delivery_mode == where.mode.value)
        if where.prefix:
            conditions.append(buckets.c.name.startswith(where.prefix, autoescape=True))
        query = select(buckets).where(*conditions).order_by(buckets.c.name).limit(limit)
        count = select(func.count()).select_from(buckets).where(*conditions)
        if after is not None:
            query = query.where(buckets.c.name > after)
        with self.engine.connect() as connection:
            rows = [BucketRow.from_mapping(r._mapping) for r in connection.execute(query)]
            total = int(connection.execute(count).scalar_one())
        return rows, total

    def matching_names(self, where: BucketFilter, limit: int) -> list[str]:
        """Returns up to `limit` names of buckets matching the filter, by name."""
        rows, _ = self.list_buckets(where, None, limit)
        return [row.name for row in rows]

    # -- statuses from the poller -----------------------------------------------------------------

    def apply_statuses(
        self, updates: Iterable[StatusUpdate], history: Sequence[BucketStatus] = ()
    ) -> int:
        """Records the latest poll of each bucket; returns how many buckets changed.

        An older status never overwrites a newer one (compared by `polled_at`), so a replay
        or a late redelivery is harmless; statuses of unknown buckets are ignored, and so are
        those of a removed bucket whose name was registered again (matched by name and id).
        Every status of `history` of a known bucket is also added to its status history
        (once: a replayed status is recognised by its bucket and poll time).
        """
        return with_retries(lambda: self._apply_statuses_once(list(updates), history))

    def _apply_statuses_once(
        self, updates: list[StatusUpdate], history: Sequence[BucketStatus]
    ) -> int:
        changed = 0
        with self.engine.begin() as connection:
            for item in updates:
                changed += self._apply_status(connection, item)
            self._add_history(connection, history)
        return changed

    @staticmethod
    def _add_history(connection: Connection, statuses: Sequence[BucketStatus]) -> None:
        if not statuses:
            return
        known = set(
            connection.execute(
                select(buckets.c.id).where(buckets.c.id.in_({s.bucket_id for s in statuses}))
            ).scalars()
        )
        rows = [
            {
                "bucket_id": status.bucket_id,
                "name": status.name,
                "polled_at": status.polled_at,
                "reachable": status.reachable,
                "error_class": status.error_class.value if status.error_class else None,
                "latency_ms": status.latency_ms,
            }
            for status in statuses
            if status.bucket_id in known
        ]
        if rows:
            connection.execute(insert_ignore(connection, bucket_status_history), rows)

    def purge_status_history(self, cutoff: datetime, batch: int = 10_000) -> int:
        """Deletes status history older than cutoff, a batch per transaction; returns how many."""
        history = bucket_status_history.c
        purged = 0
        while True:
            with self.engine.begin() as connection:
                ids = list(
                    connection.execute(
                        select(history.id).where(history.polled_at < cutoff).limit(batch)
                    ).scalars()
                )
                if ids:
                    connection.execute(delete(bucket_status_history).where(history.id.in_(ids)))
            purged += len(ids)
            if len(ids) < batch:
                return purged

    def _apply_status(self, connection: Connection, item: StatusUpdate) -> int:
        latest = item.latest
        result = connection.execute(
            update(buckets)
            .where(
                buckets.c.name == latest.name,
                buckets.c.id == latest.bucket_id,
                or_(
                    buckets.c.last_status_at.is_(None),
                    buckets.c.last_status_at < latest.polled_at,
                ),
            )
            .values(
                last_status_at=latest.polled_at,
                last_reachable=latest.reachable,
                last_error_class=latest.error_class.value if latest.error_class else None,
                last_latency_ms=latest.latency_ms,
            )
        )
        success = item.latest_success
        if success is not None:
            # The latest metrics are those of the latest successful poll.
            reported = (
                success.updates.model_dump(include=set(REPORTED_FIELDS), exclude_none=True)
                if success.updates is not None
                else {}
            )
            connection.execute(
                update(buckets)
                .where(
                    buckets.c.name == success.name,
                    buckets.c.id == success.bucket_id,
                    or_(buckets.c.last_seen.is_(None), buckets.c.last_seen < success.polled_at),
                )
                .values(last_seen=success.polled_at, **reported)
            )
        return int(result.rowcount or 0)

    # -- helpers ----------------------------------------------------------------------------------

    def lock_rows(self, connection: Connection, names: Sequence[str]) -> dict[str, BucketRow]:
        """Locks and returns the buckets of these names (those that exist), by name."""
        return self._lock_rows(connection, names)

    def write_row(self, connection: Connection, row: BucketRow) -> None:
        """Writes a changed bucket row (in the caller's transaction; announce it too)."""
        self._write_row(connection, row)

    def announce(self, connection: Connection, rows: Sequence[BucketRow], now: datetime) -> None:
        """Queues the rows' bucket.registered events in the outbox (the caller's transaction)."""
        self._announce(connection, rows, now)

    def _lock_rows(self, connection: Connection, names: Sequence[str]) -> dict[str, BucketRow]:
        # Locked in name order, so two transactions over the same names cannot deadlock.
        if not names:
            return {}
        rows = connection.execute(_LOCK_BY_NAME, {"names": list(names)})
        return {r.name: BucketRow.from_mapping(r._mapping) for r in rows}

    def _lock_merged_into(
        self, connection: Connection, names: Sequence[str]
    ) -> dict[str, BucketRow]:
        """Locks and returns the buckets these names were merged into, by merged name.

        The aliases are locked first, then their buckets in name order: the rows a join
        of the two would lock, in that order, while a registration of names merged into
        nothing (nearly every one) reads two narrow columns, not a bucket's forty.
        """
        if not names:
            return {}
        aliases = connection.execute(_LOCK_ALIASES, {"names": list(names)}).all()
        if not aliases:
            return {}
        rows = connection.execute(_LOCK_BY_ID, {"ids": sorted({a.bucket_id for a in aliases})})
        by_id = {r.id: BucketRow.from_mapping(r._mapping) for r in rows}
        return {a.name: by_id[a.bucket_id] for a in aliases if a.bucket_id in by_id}

    def _mark_replacements(
        self, connection: Connection, new_rows: list[BucketRow], now: datetime
    ) -> list[BucketRow]:
        """Returns the new rows, pending ones marked with the bucket they evidently replace."""
        pending = [row for row in new_rows if row.state == BucketState.PENDING]
        if not pending:
            return new_rows
        registered = self._host_rows(
            connection, {(row.ip_address, row.operating_system) for row in pending}
        )
        uploads = self._newest_uploads(
            connection,
            [
                row.id
                for host in registered.values()
                for row in host
                if row.delivery_mode == DeliveryMode.S3_DROP.value
            ],
        )
        marked = []
        for row in new_rows:
            host = registered.get((row.ip_address, row.operating_system))
            if row.state != BucketState.PENDING or host is None:
                marked.append(row)
                continue
            replaced = replaced_bucket(row, host, now, self.replacement_silence, uploads)
            marked.append(
                row if replaced == row.replaces_id else replace(row, replaces_id=replaced)
            )
            host.append(marked[-1])  # a later registration of the same batch sees this one
        return marked

    def _host_rows(self, connection: Connection, hosts: set[Host]) -> dict[Host, list[Lineaged]]:
        """Returns the registrations from each host; crowded hosts are left out."""
        found: dict[Host, list[Lineaged]] = {host: [] for host in hosts}
        params = {"hosts": sorted(hosts, key=str)}
        for r in connection.execute(_HOST_ROWS, params):
            host = (r.ip_address, r.operating_system)
            if r.n > CROWDED_HOST:
                found.pop(host, None)
            elif r.id is not None:  # the statement's rows, read after its counts
                found[host].append(HostRow(**{name: r._mapping[name] for name in HOST_ROW_COLUMNS}))
        return found

    @staticmethod
    def _newest_uploads(connection: Connection, bucket_ids: list[str]) -> dict[str, datetime]:
        """Returns, by bucket id, the newest upload seen in the drop folders linked to it."""
        if not bucket_ids:
            return {}
        rows = connection.execute(
            select(drop_sources.c.bucket_id, func.max(drop_sources.c.newest_upload_at))
            .where(drop_sources.c.bucket_id.in_(sorted(set(bucket_ids))))
            .group_by(drop_sources.c.bucket_id)
        )
        return {bucket_id: newest for bucket_id, newest in rows if newest is not None}

    def _write_decision(self, connection: Connection, decision: Decision, now: datetime) -> None:
        if decision.verdict is not Verdict.UPDATED or decision.row is None:
            return
        self._write_row(connection, decision.row)
        self._announce(connection, [decision.row], now)

    def _write_row(self, connection: Connection, row: BucketRow) -> None:
        values = row.values()
        del values["id"]
        connection.execute(update(buckets).where(buckets.c.id == row.id).values(**values))

    def _announce(self, connection: Connection, rows: Sequence[BucketRow], now: datetime) -> None:
        messages = [
            OutboxMessage(BUCKET_REGISTERED.name, row.name, registration_message(row))
            for row in rows
        ]
        OUTBOX.add(connection, messages, now)


def status_updates(statuses: Iterable[BucketStatus]) -> list[StatusUpdate]:
    """Reduces a batch of statuses to the latest one, and latest success, per bucket.

    A bucket is its name and id: a removed bucket's statuses stay apart from those of a new
    bucket registered under the same name.
    """
    latest: dict[tuple[str, str], BucketStatus] = {}
    success: dict[tuple[str, str], BucketStatus] = {}
    for status in statuses:
        key = (status.name, status.bucket_id)
        if key not in latest or latest[key].polled_at < status.polled_at:
            latest[key] = status
        if status.reachable and (key not in success or success[key].polled_at < status.polled_at):
            success[key] = status
    return [StatusUpdate(latest[key], success.get(key)) for key in sorted(latest)]
