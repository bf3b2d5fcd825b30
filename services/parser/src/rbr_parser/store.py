"""The `logs` table: idempotent bulk loads, the objects' created_at, retention deletes.

On MySQL/MariaDB rows go in by `LOAD DATA LOCAL INFILE ... IGNORE` (the fastest way in),
else by multi-row INSERT IGNORE (SQLite, or a server or engine without local_infile).
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any

from pymysql.constants import CLIENT, SERVER_STATUS
from pymysql.converters import escape_string
from sqlalchemy import Engine, delete, func, select, text
from sqlalchemy.engine import Connection

from rbr_runtime.db import partitions
from rbr_runtime.db.engine import insert_ignore, is_mysql
from rbr_runtime.db.tables import log_objects, logs

log = logging.getLogger(__name__)


# created_at is written by the parser (one value per object, microseconds included), not
# left to the column default: the rows of an object then agree, on MySQL and SQLite alike.
INSERT_COLUMNS: tuple[str, ...] = tuple(
    column.name for column in logs.columns if column.name != "id"
)


def _mysql_literal(value: object, escape: Callable[[str], str]) -> str:
    """Returns a value as a MySQL literal (strings escaped by PyMySQL's own function)."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + escape(value) + "'"
    if isinstance(value, datetime):
        # As UtcDateTime binds it: aware only (a naive one would be read as local time),
        # naive UTC with all six fractional digits for the DATETIME(6) columns.
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        return "'" + f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}" + "'"
    if isinstance(value, bool | int):
        return str(int(value))
    raise TypeError(f"no literal for {type(value).__name__}")


def _quote_doubling(value: str) -> str:
    return value.replace("'", "''")


# LOAD DATA's default text format: fields end at a tab, rows at a line feed, a backslash
# escapes, \N is NULL. These characters are escaped; any other stands for itself.
_LOAD_ESCAPES = {"\0": "\\0", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\", "\x1a": "\\Z"}
_LOAD_SPECIAL = re.compile(r"[\x00\t\n\r\\\x1a]")


def _load_escape(match: re.Match[str]) -> str:
    return _LOAD_ESCAPES[match.group()]


def _load_field(value: object) -> str:
    """Returns a non-string value as a LOAD DATA field (see _mysql_literal)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")
    if isinstance(value, bool | int):
        return str(int(value))
    raise TypeError(f"no LOAD DATA field for {type(value).__name__}")


def encode_for_load(rows: Sequence[dict[str, Any]]) -> bytes:
    """Returns rows as LOAD DATA input (columns INSERT_COLUMNS, in order), UTF-8."""
    special = _LOAD_SPECIAL.search
    escape = _LOAD_SPECIAL.sub
    # None and str, by far the most common, are inlined (no call per value).
    return "".join(
        "\t".join(
            [
                "\\N"
                if value is None
                else (escape(_load_escape, value) if special(value) else value)
                if type(value) is str
                else _load_field(value)
                for value in map(row.__getitem__, INSERT_COLUMNS)
            ]
        )
        + "\n"
        for row in rows
    ).encode()


def rows_in(batch: Sequence[dict[str, Any]] | bytes) -> int:
    """Returns how many rows a batch holds (encoded: one line each, newlines escaped)."""
    return batch.count(b"\n") if isinstance(batch, bytes) else len(batch)


class LogRows:
    """Writes parsed records to `logs`, fixes each object's created_at, deletes old rows."""

    def __init__(self, engine: Engine, *, bulk_load: bool = True) -> None:
        """Prepares the writer.

        Args:
            engine: the database; on MySQL, made with local_infile for bulk loads.
            bulk_load: use LOAD DATA where the engine and the server allow it (False: always
                INSERT IGNORE, the slower path, kept for comparison).
        """
        self._engine = engine
        self._insert = insert_ignore(engine, logs)
        self._claim = insert_ignore(engine, log_objects)
        self._mysql = is_mysql(engine)
        self._bulk_load = bulk_load and self._mysql
        self._load_checked = False
        columns = ", ".join(INSERT_COLUMNS)  # constants from the table definition
        self._mysql_prefix = f"INSERT IGNORE INTO {logs.name} ({columns}) VALUES "  # noqa: S608
        self._load_statement = (
            "LOAD DATA LOCAL INFILE %s IGNORE INTO TABLE "
            f"{logs.name} CHARACTER SET utf8mb4 "
            "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' "
            f"({columns})"
        )

    def object_created_at(self, name: str, source_sha256: str, now: datetime) -> datetime:
        """Returns the created_at of an object's rows: now if it is new, else its first parse's.

        Every parse of one object (a redelivery, a replay, a resumed parse) stamps its rows
        with this one value, so a row parsed again meets its original in the unique key.
        """
        claim = {"source_sha256": source_sha256, "name": name, "created_at": now}
        with self._engine.begin() as connection:
            connection.execute(self._claim, [claim])
            created_at: datetime = connection.execute(
                select(log_objects.c.created_at).where(
                    log_objects.c.source_sha256 == source_sha256, log_objects.c.name == name
                )
            ).scalar_one()
        return created_at

    def loads_encoded(self) -> bool:
        """Tells whether insert() takes rows encoded by encode_for_load (LOAD DATA) here."""
        if self._load_checked or not self._bulk_load:
            return self._bulk_load
        with self._engine.connect() as connection:
            return self._loads(connection)

    def prepared(self, rows: Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]] | bytes:
        """Returns rows as insert() takes them fastest: encoded where it loads, else as is.

        Lets a caller encode one batch while the one before is being loaded.
        """
        return encode_for_load(rows) if self.loads_encoded() else rows

    def insert(self, rows: Sequence[dict[str, Any]] | bytes) -> int:
        """Inserts rows in one transaction, skipping those already present.

        Rows are identified by (source_sha256, name, record_no) and their object's one
        created_at, so inserting the records of an object twice for one bucket stores them
        once, while another bucket's rows with the same content are rows of their own.

        Args:
            rows: dicts of INSERT_COLUMNS, or the same encoded by encode_for_load (only
                where loads_encoded()).

        Returns:
            How many rows were new.
        """
        if not rows:
            return 0
        if isinstance(rows, bytes):
            return self.load(rows)
        with self._engine.begin() as connection:
            if self._mysql and self._loads(connection):
                return self._load_mysql(connection, encode_for_load(rows))
            if self._mysql:
                return self._insert_mysql(connection, rows)
            result = connection.execute(self._insert, list(rows))
        return max(0, result.rowcount)

    def load(self, data: bytes) -> int:
        """Loads rows encoded by encode_for_load in one transaction (MySQL, local_infile).

        Returns:
            How many rows were new.
        """
        with self._engine.begin() as connection:
            return self._load_mysql(connection, data)

    def _loads(self, connection: Connection) -> bool:
        """Tells whether LOAD DATA LOCAL works here (checked once: client flag, server)."""
        if self._load_checked or not self._bulk_load:
            return self._bulk_load
        self._load_checked = True
        dbapi = connection.connection.dbapi_connection
        client_allows = bool(getattr(dbapi, "client_flag", 0) & CLIENT.LOCAL_FILES)
        server_allows = bool(connection.execute(text("SELECT @@local_infile")).scalar_one())
        self._bulk_load = client_allows and server_allows
        if not self._bulk_load:
            log.warning(
                "logs rows go in by INSERT, not LOAD DATA: local_infile is off on the %s",
                "server" if client_allows else "client (make_engine(local_infile=True))",
            )
        return self._bulk_load

    def _load_mysql(self, connection: Connection, data: bytes) -> int:
        """LOAD DATA LOCAL INFILE ... IGNORE of encoded rows, from a private temporary file.

        PyMySQL reads the file the server names, so the data goes through a file of its own
        (mode 0600, deleted on return) rather than a pipe.
        """
        dbapi = connection.connection.dbapi_connection
        assert dbapi is not None
        with tempfile.NamedTemporaryFile(prefix="rbr-logs-", suffix=".tsv") as file:
            file.write(data)
            file.flush()
            cursor = dbapi.cursor()
            try:
                cursor.execute(self._load_statement, (file.name,))
                inserted = int(cursor.rowcount)
            finally:
                cursor.close()
        return max(0, inserted)

    def _insert_mysql(self, connection: Connection, rows: Sequence[dict[str, Any]]) -> int:
        """One multi-row INSERT IGNORE, built without per-value driver overhead.

        PyMySQL escapes every parameter through several Python calls, which made escaping
        the parser's largest cost. Here each value goes through PyMySQL's escape function
        directly (or quote doubling when the server runs with NO_BACKSLASH_ESCAPES, as
        PyMySQL itself does), so attacker-controlled text is quoted exactly as the driver
        would quote it.
        """
        dbapi = connection.connection.dbapi_connection
        assert dbapi is not None
        no_backslash = dbapi.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES
        escape = _quote_doubling if no_backslash else escape_string
        # None and str, by far the most common, are inlined (no call per value).
        values = ",".join(
            "("
            + ",".join(
                [
                    "NULL"
                    if value is None
                    else "'" + escape(value) + "'"
                    if type(value) is str
                    else _mysql_literal(value, escape)
                    for value in map(row.__getitem__, INSERT_COLUMNS)
                ]
            )
            + ")"
            for row in rows
        )
        cursor = dbapi.cursor()
        try:
            cursor.execute(self._mysql_prefix + values)
            inserted = int(cursor.rowcount)
        finally:
            cursor.close()
        return max(0, inserted)

    def delete_older_than(self, cutoff: datetime, chunk: int) -> Iterator[int]:
        """Deletes rows created before cutoff, chunk by chunk, one transaction each.

        Yields:
            The number of rows each chunk deleted (so the caller can report progress).
        """
        while True:
            with self._engine.begin() as connection:
                ids = (
                    connection.execute(
                        select(logs.c.id)
                        .where(logs.c.created_at < cutoff)
                        .order_by(logs.c.created_at)
                        .limit(chunk)
                    )
                    .scalars()
                    .all()
                )
                if not ids:
                    return
                deleted = connection.execute(delete(logs).where(logs.c.id.in_(ids))).rowcount
            yield deleted

    def drop_days_before(self, cutoff: datetime) -> int:
        """Drops the day partitions of rows created before cutoff (MySQL); returns rows."""
        _, rows = partitions.drop_days_before(self._engine, logs.name, cutoff)
        return rows

    def create_days_ahead(self, today: date, days_ahead: int) -> list[str]:
        """Creates the day partitions of logs up to today + days_ahead (MySQL)."""
        return partitions.ensure_days_ahead(self._engine, logs.name, today, days_ahead)

    def delete_objects_older_than(self, cutoff: datetime) -> int:
        """Forgets the objects first parsed before cutoff (after their rows went)."""
        with self._engine.begin() as connection:
            deleted = connection.execute(
                delete(log_objects).where(log_objects.c.created_at < cutoff)
            ).rowcount
        return int(deleted)

    def count_for_object(self, name: str, source_sha256: str) -> int:
        """Returns how many of a bucket's rows came from the object with this sha256."""
        with self._engine.connect() as connection:
            count: int = connection.execute(
                select(func.count())
                .select_from(logs)
                .where(logs.c.source_sha256 == source_sha256, logs.c.name == name)
            ).scalar_one()
        return count
