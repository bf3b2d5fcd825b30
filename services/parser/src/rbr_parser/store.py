"""The `logs` table: batched idempotent inserts and bounded deletes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from pymysql.constants import SERVER_STATUS
from pymysql.converters import escape_string
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.engine import Connection

from rbr_runtime.db.engine import insert_ignore, is_mysql
from rbr_runtime.db.tables import logs

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


class LogRows:
    """Writes parsed records to `logs` and deletes old ones."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._insert = insert_ignore(engine, logs)
        self._mysql = is_mysql(engine)
        columns = ", ".join(INSERT_COLUMNS)  # constants from the table definition
        self._mysql_prefix = f"INSERT IGNORE INTO {logs.name} ({columns}) VALUES "  # noqa: S608

    def insert(self, rows: Sequence[dict[str, Any]]) -> int:
        """Inserts rows in one transaction, skipping those already present.

        Rows are identified by (source_sha256, name, record_no), so inserting the records
        of an object twice for one bucket stores them once, while another bucket's rows
        with the same content are rows of their own.

        Returns:
            How many rows were new.
        """
        if not rows:
            return 0
        with self._engine.begin() as connection:
            if self._mysql:
                return self._insert_mysql(connection, rows)
            result = connection.execute(self._insert, list(rows))
        return max(0, result.rowcount)

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

    def count_for_object(self, name: str, source_sha256: str) -> int:
        """Returns how many of a bucket's rows came from the object with this sha256."""
        with self._engine.connect() as connection:
            count: int = connection.execute(
                select(func.count())
                .select_from(logs)
                .where(logs.c.source_sha256 == source_sha256, logs.c.name == name)
            ).scalar_one()
        return count
