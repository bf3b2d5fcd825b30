"""The log-extractor's SQL: cursors and leases, the copy ledgers, the drop folders it reads.

`extract_cursors` (slots, leases, HTTP cursors, pending events), `s3_copy_ledger`,
`drop_file_ledger`; `drop_sources` is the registrar's, read only here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Engine, Update, and_, case, func, or_, select, update
from sqlalchemy.engine import Connection

from rbr_runtime.db.engine import insert_ignore, upsert
from rbr_runtime.db.tables import drop_file_ledger, drop_sources, extract_cursors, s3_copy_ledger
from rbr_schemas import utcnow

MAX_ERROR_CHARS = 500


def uri_digest(uri: str) -> str:
    """Returns the ledger key of a source object URI."""
    return hashlib.sha256(uri.encode()).hexdigest()


@dataclass(frozen=True)
class CursorState:
    """What is stored about one bucket's extractions."""

    http_cursor: str | None
    pending_event: str | None
    last_extract_slot: int


@dataclass(frozen=True)
class LedgerEntry:
    """A source object already copied (the version and how much of it).

    Attributes:
        size_bytes: how many of the source's first bytes were copied.
        source_sha256: their sha256 (None for rows recorded before it was kept).
        target_key: the raw object the last copy made (None: the source was empty).
    """

    source_uri: str
    source_etag: str | None
    size_bytes: int = 0
    source_sha256: str | None = None
    target_key: str | None = None


@dataclass(frozen=True)
class DropFolder:
    """An instance folder of a drop location that feeds a bucket."""

    location: str
    """`s3://BUCKET/PREFIX/`."""
    region: str
    folder: str


@dataclass(frozen=True)
class DropFile:
    """How much of one logical file of a bucket's drop folders was copied.

    Attributes:
        size_bytes: how many of its first bytes were copied.
        source_sha256: their sha256.
        reference_uri: a source object holding those bytes (to compare a smaller one with).
    """

    file_name: str
    size_bytes: int
    source_sha256: str
    reference_uri: str
    reference_etag: str | None
    target_key: str | None


class ExtractState:
    """Reads and writes `extract_cursors` and `s3_copy_ledger`."""

    def __init__(self, engine: Engine, owner: str) -> None:
        """Prepares the store.

        Args:
            engine: the registry database.
            owner: who takes leases (host:pid), recorded for operators.
        """
        self.engine = engine
        self._engine = engine
        self.owner = owner
        self._insert_cursor = insert_ignore(engine, extract_cursors)

    # -- leases and slots ------------------------------------------------------------------------

    def _ensure_row(self, connection: Connection, name: str) -> None:
        connection.execute(self._insert_cursor, [{"name": name, "updated_at": utcnow()}])

    def ensure(self, name: str) -> None:
        """Creates the bucket's row if it has none yet."""
        with self._engine.begin() as connection:
            self._ensure_row(connection, name)

    def _lease_free(self, now: datetime) -> ColumnElement[bool]:
        """The condition for taking a bucket's lease: none, expired, or already this owner's.

        A lease this process could not give back (the database went away as it ended its
        extraction) is taken back at once, not after it expires: the owner is this process,
        which knows it is no longer extracting the bucket.
        """
        table = extract_cursors.c
        return or_(
            table.lease_until.is_(None), table.lease_until < now, table.lease_owner == self.owner
        )

    def claim_slot(self, name: str, slot: int, lease: timedelta) -> bool:
        """Claims the bucket's extraction for the slot, with a lease; False if done or taken.

        Only one replica's conditional update can move `last_extract_slot` to the slot, so a
        slot is extracted once even when two replicas think they own the bucket. The caller
        makes sure it does not extract the bucket twice at once itself (the lease is taken
        whatever this owner's own lease says).
        """
        now = utcnow()
        table = extract_cursors.c
        with self._engine.begin() as connection:
            self._ensure_row(connection, name)
            result = connection.execute(
                update(extract_cursors)
                .where(
                    table.name == name,
                    table.last_extract_slot < slot,
                    self._lease_free(now),
                )
                .values(
                    last_extract_slot=slot,
                    lease_owner=self.owner,
                    lease_until=now + lease,
                    last_attempt_at=now,
                    updated_at=now,
                )
            )
        return result.rowcount == 1

    def take_lease(self, name: str, slot: int, lease: timedelta) -> bool:
        """Takes the bucket's lease whatever slot was done (a run by hand); False if busy.

        The slot is recorded too, so the scheduled extraction of this slot does not follow.
        """
        now = utcnow()
        table = extract_cursors.c
        with self._engine.begin() as connection:
            self._ensure_row(connection, name)
            result = connection.execute(
                update(extract_cursors)
                .where(
                    table.name == name,
                    self._lease_free(now),
                )
                .values(
                    last_extract_slot=case(
                        (table.last_extract_slot < slot, slot), else_=table.last_extract_slot
                    ),
                    lease_owner=self.owner,
                    lease_until=now + lease,
                    last_attempt_at=now,
                    updated_at=now,
                )
            )
        return result.rowcount == 1

    def release(
        self, name: str, *, give_back_slot: int | None = None, failure: str | None = None
    ) -> None:
        """Ends this process's lease; with give_back_slot, the slot is to be done again.

        With failure, the extraction's failure is recorded in the same transaction (one that
        could not be recorded when it happened, the database being down).
        """
        table = extract_cursors.c
        values: dict[str, object] = {"lease_owner": None, "lease_until": None}
        if give_back_slot is not None:
            values["last_extract_slot"] = case(
                (table.last_extract_slot == give_back_slot, give_back_slot - 1),
                else_=table.last_extract_slot,
            )
        with self._engine.begin() as connection:
            connection.execute(
                update(extract_cursors)
                .where(table.name == name, table.lease_owner == self.owner)
                .values(**values)
            )
            if failure is not None:
                connection.execute(self._outcome_update(name, failure, utcnow()))

    # -- cursor and pending event ---------------------------------------------------------------

    def state(self, name: str) -> CursorState:
        """Returns the bucket's cursor and pending event."""
        table = extract_cursors.c
        with self._engine.connect() as connection:
            row = connection.execute(
                select(table.http_cursor, table.pending_event, table.last_extract_slot).where(
                    table.name == name
                )
            ).one_or_none()
        if row is None:
            return CursorState(None, None, -1)
        return CursorState(row.http_cursor, row.pending_event, row.last_extract_slot)

    def store_extraction(self, name: str, *, cursor: str | None, pending_event: str) -> None:
        """Records a stored object: its event (until confirmed) and the cursor after it.

        One transaction: once the cursor moves past the records, their object is sure to be
        announced (the pending event is sent again until the broker confirms it).
        """
        values: dict[str, object] = {"pending_event": pending_event, "updated_at": utcnow()}
        if cursor is not None:
            values["http_cursor"] = cursor
        with self._engine.begin() as connection:
            connection.execute(
                update(extract_cursors).where(extract_cursors.c.name == name).values(**values)
            )

    def store_cursor(self, name: str, cursor: str) -> None:
        """Records a new cursor without an object (an empty pull that moved the cursor)."""
        with self._engine.begin() as connection:
            connection.execute(
                update(extract_cursors)
                .where(extract_cursors.c.name == name)
                .values(http_cursor=cursor, updated_at=utcnow())
            )

    def clear_pending(self, name: str, pending_event: str) -> None:
        """Forgets the pending event once the broker confirmed it (if it is still that one)."""
        table = extract_cursors.c
        with self._engine.begin() as connection:
            connection.execute(
                update(extract_cursors)
                .where(table.name == name, table.pending_event == pending_event)
                .values(pending_event=None, updated_at=utcnow())
            )

    def record_outcome(self, name: str, error: str | None, when: datetime | None = None) -> None:
        """Records how the bucket's extraction ended: success (None) or a short reason."""
        with self._engine.begin() as connection:
            connection.execute(self._outcome_update(name, error, when or utcnow()))

    @staticmethod
    def _outcome_update(name: str, error: str | None, now: datetime) -> Update:
        table = extract_cursors.c
        values: dict[str, object]
        if error is None:
            values = {"last_extracted_at": now, "consecutive_failures": 0, "last_error": None}
        else:
            values = {
                "consecutive_failures": table.consecutive_failures + 1,
                "last_error": error[:MAX_ERROR_CHARS],
            }
        return update(extract_cursors).where(table.name == name).values(updated_at=now, **values)

    # -- S3 copy ledger --------------------------------------------------------------------------

    def copied(self, name: str, uris: Iterable[str]) -> dict[str, LedgerEntry]:
        """Returns the ledger entries of those source URIs that were copied already."""
        digests = {uri_digest(uri): uri for uri in uris}
        if not digests:
            return {}
        table = s3_copy_ledger.c
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(
                    table.source_uri,
                    table.source_etag,
                    table.size_bytes,
                    table.source_sha256,
                    table.target_key,
                ).where(and_(table.name == name, table.source_uri_sha256.in_(list(digests))))
            ).all()
        return {
            row.source_uri: LedgerEntry(
                row.source_uri, row.source_etag, row.size_bytes, row.source_sha256, row.target_key
            )
            for row in rows
        }

    def record_copy(
        self,
        name: str,
        *,
        source_uri: str,
        source_etag: str | None,
        size_bytes: int,
        source_sha256: str | None,
        target_key: str | None,
        pending_event: str | None = None,
    ) -> None:
        """Records the version of a source object copied (a new one replaces the old).

        With pending_event, the copy's `logs.extracted` event is stored in the same
        transaction (as a pull's is with its cursor), to be sent again until confirmed.
        """
        row = {
            "name": name,
            "source_uri_sha256": uri_digest(source_uri),
            "source_uri": source_uri,
            "source_etag": source_etag,
            "size_bytes": size_bytes,
            "source_sha256": source_sha256,
            "target_key": target_key,
            "copied_at": utcnow(),
        }
        with self._engine.begin() as connection:
            connection.execute(
                upsert(
                    connection,
                    s3_copy_ledger,
                    [row],
                    key_columns=["name", "source_uri_sha256"],
                    update_columns=[
                        "source_etag",
                        "size_bytes",
                        "source_sha256",
                        "target_key",
                        "copied_at",
                    ],
                )
            )
            if pending_event is not None:
                connection.execute(
                    update(extract_cursors)
                    .where(extract_cursors.c.name == name)
                    .values(pending_event=pending_event, updated_at=utcnow())
                )


def file_digest(file_name: str) -> str:
    """Returns the ledger key of a drop file's name."""
    return hashlib.sha256(file_name.encode()).hexdigest()


class DropState:
    """A bucket's drop folders, its drop files' ledger and the freshness of its uploads.

    The folders are the registrar's `drop_sources` rows linked to the bucket (read only).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def linked_folders(self, bucket_id: str) -> list[DropFolder]:
        """Returns the drop folders linked to a bucket (by the registrar)."""
        table = drop_sources.c
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(table.location, table.region, table.folder)
                .where(table.bucket_id == bucket_id)
                .order_by(table.id)
            ).all()
        return [DropFolder(row.location, row.region, row.folder) for row in rows]

    def files(self, name: str, file_names: Iterable[str]) -> dict[str, DropFile]:
        """Returns what was copied of the bucket's logical files of those names."""
        digests = [file_digest(file_name) for file_name in set(file_names)]
        if not digests:
            return {}
        table = drop_file_ledger.c
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(drop_file_ledger).where(table.name == name, table.file_sha256.in_(digests))
            ).all()
        return {
            row.file_name: DropFile(
                row.file_name,
                row.size_bytes,
                row.source_sha256,
                row.reference_uri,
                row.reference_etag,
                row.target_key,
            )
            for row in rows
        }

    def record_copy(
        self,
        name: str,
        *,
        source: LedgerEntry,
        file: DropFile,
        pending_event: str | None,
    ) -> None:
        """Records one source object handled and its logical file's state, in one transaction.

        With pending_event, the copy's `logs.extracted` event is stored with them (sent again
        until the broker confirms it).
        """
        now = utcnow()
        with self._engine.begin() as connection:
            connection.execute(
                upsert(
                    connection,
                    s3_copy_ledger,
                    [
                        {
                            "name": name,
                            "source_uri_sha256": uri_digest(source.source_uri),
                            "source_uri": source.source_uri,
                            "source_etag": source.source_etag,
                            "size_bytes": source.size_bytes,
                            "source_sha256": source.source_sha256,
                            "target_key": source.target_key,
                            "copied_at": now,
                        }
                    ],
                    key_columns=["name", "source_uri_sha256"],
                    update_columns=[
                        "source_etag",
                        "size_bytes",
                        "source_sha256",
                        "target_key",
                        "copied_at",
                    ],
                )
            )
            connection.execute(
                upsert(
                    connection,
                    drop_file_ledger,
                    [
                        {
                            "name": name,
                            "file_sha256": file_digest(file.file_name),
                            "file_name": file.file_name,
                            "size_bytes": file.size_bytes,
                            "source_sha256": file.source_sha256,
                            "reference_uri": file.reference_uri,
                            "reference_etag": file.reference_etag,
                            "target_key": file.target_key,
                            "copied_at": now,
                        }
                    ],
                    key_columns=["name", "file_sha256"],
                    update_columns=[
                        "size_bytes",
                        "source_sha256",
                        "reference_uri",
                        "reference_etag",
                        "target_key",
                        "copied_at",
                    ],
                )
            )
            if pending_event is not None:
                connection.execute(
                    update(extract_cursors)
                    .where(extract_cursors.c.name == name)
                    .values(pending_event=pending_event, updated_at=now)
                )

    def record_uploads(self, name: str, newest: datetime | None, checked_at: datetime) -> None:
        """Records the newest upload a complete listing of the bucket's S3 sources showed.

        The poller judges s3-drop buckets by it: `checked_at - newest` is a silence the
        listing proves (S3 keeps upload times), whenever the extractor ran.
        """
        table = extract_cursors.c
        with self._engine.begin() as connection:
            connection.execute(
                update(extract_cursors)
                .where(table.name == name)
                .values(
                    last_upload_at=case(
                        (table.last_upload_at.is_(None), newest),
                        (table.last_upload_at < newest, newest),
                        else_=table.last_upload_at,
                    )
                    if newest is not None
                    else table.last_upload_at,
                    uploads_checked_at=checked_at,
                    uploads_first_checked_at=func.coalesce(
                        table.uploads_first_checked_at, checked_at
                    ),
                    updated_at=checked_at,
                )
            )
