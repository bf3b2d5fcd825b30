"""Multi-row INSERTs of a batch's rows, written as SQL text once per statement.

Given a list of rows, SQLAlchemy builds each row's parameters anew (a dictionary through every
bind name and type processor, about 2 µs a value), then PyMySQL escapes each value through four
calls (`escape`, `escape_item`, the type's encoder, `escape_string`: about 1.5 µs) and formats
every row's VALUES with `%`. For hot INSERTs (the registrar's new buckets, every outbox's
messages, the notifier's alerts, deliveries and tries) the statement is compiled once per
dialect and set of columns, each value goes through its column type's bind processor (the same
SQLAlchemy would apply: UTC datetimes made naive, JSON serialised), and the common types (text,
integers, NULL, naive datetimes) are written as literals here, byte for byte as PyMySQL writes
them; any other value (bytes, ...) goes through the connection's own `escape`. The rows go out
as one multi-row INSERT (split where PyMySQL would split it), as before. A server in
NO_BACKSLASH_ESCAPES mode, another MySQL driver, and drivers with positional parameters (SQLite)
keep the driver's or SQLAlchemy's own path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from pymysql import converters
from pymysql.constants import SERVER_STATUS
from pymysql.cursors import Cursor
from sqlalchemy import Table, insert
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError

from rbr_runtime.db.engine import insert_ignore
from rbr_runtime.db.types import UtcDateTime

Processor = Callable[[Any], Any] | None
Binding = tuple[str, Processor, bool]
"""A column's name, its bind processor, and whether it is a `UtcDateTime`."""
NAMED_STYLES = ("pyformat", "named")
NO_PARAMETERS = {"no_parameters": True}
_escape_string: Callable[[str], str] = converters.escape_string
"""PyMySQL's escaping of text (its table of characters to escape), typed."""
MAX_STATEMENT_CHARS = Cursor.max_stmt_length
"""Where PyMySQL splits a multi-row INSERT (its cursors' `max_stmt_length`, in bytes)."""


def insert_rows(
    connection: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    ignore: bool = False,
) -> None:
    """Inserts rows that all have the same columns (INSERT IGNORE with `ignore`).

    Raises:
        ValueError: the rows do not all have the same columns.
    """
    if not rows:
        return
    keys = rows[0].keys()
    if any(row.keys() != keys for row in rows):
        raise ValueError("rows of one multi-row INSERT must have the same columns")
    dialect = connection.dialect
    compiled = _compiled(dialect, table, tuple(sorted(keys)), ignore)
    if compiled is None:
        statement = insert_ignore(connection, table) if ignore else insert(table)
        connection.execute(statement, list(rows))
        return
    sql, bindings = compiled
    escape = _pymysql_escape(connection)
    if escape is None:
        parameters = [_parameters(row, bindings) for row in rows]
        connection.exec_driver_sql(sql, parameters)
        return
    head, _, _ = sql.partition(" VALUES ")
    for text in literal_inserts(head + " VALUES ", rows, bindings, escape):
        _execute_literal(connection, text, sql)


def _execute_literal(connection: Connection, statement: str, template: str) -> None:
    """Runs a statement with its values written in; an error shows the template instead.

    The engine hides parameters from errors (`hide_parameters`): values written into the text
    must not come out in an error's message either.
    """
    try:
        # Without parameters the driver must not %-format the text: values may hold a `%`.
        connection.exec_driver_sql(statement, execution_options=NO_PARAMETERS)
    except DBAPIError as error:
        error.statement = template
        raise


def literal_inserts(
    head: str,
    rows: Sequence[dict[str, Any]],
    bindings: Sequence[Binding],
    escape: Callable[[Any], str],
) -> list[str]:
    """Returns the multi-row INSERTs of rows, their values written as SQL literals.

    Each value goes through its bind processor, then `literal` (`escape`: the driver's own
    escaping, for types `literal` does not write itself). A UTC datetime in a `UtcDateTime`
    column is written at once: the processor would only drop its zone. A statement is cut
    before it would exceed PyMySQL's `max_stmt_length`, as PyMySQL's `executemany` cuts it.
    """
    statements: list[str] = []
    tuples: list[str] = []
    size = len(head.encode())
    for row in rows:
        values = []
        for name, process, utc in bindings:
            value = row[name]
            if utc and type(value) is datetime and value.tzinfo is UTC:
                # "…+00:00" less its zone: what the processor's naive datetime gives.
                values.append("'" + value.isoformat(" ")[:-6] + "'")
                continue
            values.append(literal(value if process is None else process(value), escape))
        text = "(" + ",".join(values) + ")"
        length = len(text.encode()) + 1
        if tuples and size + length > MAX_STATEMENT_CHARS:
            statements.append(head + ",".join(tuples))
            tuples, size = [], len(head.encode())
        tuples.append(text)
        size += length
    statements.append(head + ",".join(tuples))
    return statements


def literal(value: Any, escape: Callable[[Any], str]) -> str:
    """Returns a value as a MySQL literal, as PyMySQL's `Connection.escape` writes it.

    Text (exactly `str`), integers (not bools), None and naive datetimes are written here,
    with the same escaping table and the same datetime text (`driver.py`); anything
    else (enums, bools, floats, aware datetimes, bytes, ...) goes to `escape`.
    """
    kind = type(value)
    if kind is str:
        return "'" + _escape_string(value) + "'"
    if kind is int:
        return str(value)
    if value is None:
        return "NULL"
    if kind is datetime and value.tzinfo is None:
        moment: datetime = value
        return "'" + moment.isoformat(" ") + "'"
    return escape(value)


def _parameters(row: dict[str, Any], bindings: Sequence[Binding]) -> dict[str, Any]:
    return {
        name: row[name] if process is None else process(row[name]) for name, process, _ in bindings
    }


def _pymysql_escape(connection: Connection) -> Callable[[Any], str] | None:
    """Returns the PyMySQL connection's `escape`, or None where literals are not written here.

    Not here: another driver, or a server in NO_BACKSLASH_ESCAPES mode (quotes are doubled
    there, backslashes kept: PyMySQL's own path knows it).
    """
    if connection.dialect.driver != "pymysql" or connection.dialect.paramstyle != "pyformat":
        return None
    dbapi_connection: Any = connection.connection.dbapi_connection
    if dbapi_connection.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES:
        return None
    escape: Callable[[Any], str] = dbapi_connection.escape
    return escape


@lru_cache(maxsize=64)
def _compiled(
    dialect: Dialect, table: Table, columns: tuple[str, ...], ignore: bool
) -> tuple[str, tuple[Binding, ...]] | None:
    """Returns the INSERT's SQL for these columns and each column's bind processor, in order.

    None where SQLAlchemy's own path is needed: positional parameters, or a statement that
    would bind more than the rows' columns (a column default computed in Python).
    """
    if dialect.paramstyle not in NAMED_STYLES:
        return None
    bind = _DialectOnly(dialect)
    statement = insert_ignore(bind, table) if ignore else insert(table)  # type: ignore[arg-type]
    compiled = statement.compile(dialect=dialect, column_keys=list(columns))
    if set(compiled.params) != set(columns):
        return None
    sql = compiled.string
    ordered = columns
    if dialect.paramstyle == "pyformat":
        # In the order of the statement's VALUES (the table's), which literal rows follow.
        ordered = tuple(sorted(columns, key=lambda name: sql.index(f"%({name})s")))
    bindings = tuple(
        (
            name,
            table.c[name].type.dialect_impl(dialect).bind_processor(dialect),
            isinstance(table.c[name].type, UtcDateTime),
        )
        for name in ordered
    )
    return sql, bindings


class _DialectOnly:
    """Stands for a connection where only its dialect is read (`insert_ignore`)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
