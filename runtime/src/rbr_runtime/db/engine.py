"""SQLAlchemy engines for MySQL/MariaDB (PyMySQL) and SQLite, and dialect-neutral writes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.dml import Insert


def make_engine(url: str, *, local_infile: bool = False, **kwargs: Any) -> Engine:
    """Creates an engine for the URL, tuned for its dialect.

    MySQL: utf8mb4, connections checked before use (unless `pool_pre_ping=False`) and
    recycled hourly (servers drop idle connections). SQLite: the file's folder is created,
    WAL journal, foreign keys on, and a busy timeout so several local processes can share
    one file.

    Args:
        url: the database URL.
        local_infile: MySQL: allow LOAD DATA LOCAL INFILE (the parser's bulk loads). Only
            for the engines that load: the client then sends any file the server asks for.
        **kwargs: passed to create_engine.
    """
    parsed = make_url(url)
    # Bound values (tokens, attacker-controlled log text) never reach error messages or logs.
    kwargs.setdefault("hide_parameters", True)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database, **kwargs)
    if parsed.get_backend_name() in ("mysql", "mariadb") and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    # Every timestamp is UTC: CURRENT_TIMESTAMP defaults must agree with UtcDateTime.
    connect_args = {"init_command": "SET time_zone = '+00:00'", **kwargs.pop("connect_args", {})}
    if local_infile:
        connect_args["local_infile"] = True
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(
        parsed,
        connect_args=connect_args,
        pool_recycle=3600,
        isolation_level="READ COMMITTED",
        **kwargs,
    )


def _sqlite_engine(url: str, database: str | None, **kwargs: Any) -> Engine:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # FULL: a commit is on disk before it returns, so what was acknowledged survives a
        # power cut too (NORMAL in WAL mode may lose the last commits then).
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    return engine


def make_probe_engine(url: str, timeout: float) -> Engine:
    """Returns a one-connection engine whose every step gives up after `timeout` seconds.

    For health probes: apart from the service's pool, so a pool busy with work is not taken
    for an outage, and with socket timeouts on MySQL, so a frozen server fails the probe
    instead of blocking it (the work engine waits on a query for as long as it takes).
    """
    seconds = max(1, math.ceil(timeout))
    if make_url(url).get_backend_name() == "sqlite":
        return make_engine(url, poolclass=NullPool)
    return make_engine(
        url,
        pool_size=1,
        max_overflow=0,
        pool_timeout=seconds,
        connect_args={
            "connect_timeout": seconds,
            "read_timeout": seconds,
            "write_timeout": seconds,
        },
    )


def is_mysql(bind: Engine | Connection) -> bool:
    """Tells whether the engine or connection talks to MySQL/MariaDB."""
    return bind.dialect.name in ("mysql", "mariadb")


def insert_ignore(bind: Engine | Connection, table: Table) -> Insert:
    """Returns an INSERT that silently skips rows whose unique key already exists.

    On MySQL this is INSERT IGNORE, which also downgrades data errors (a value too long for
    its column, a NULL in a NOT NULL column) to warnings and stores a truncated value, where
    SQLite would keep it whole: callers bound every value to its column first (the parser caps
    its fields, the notifier validates ids), as they must for SQLite's sake anyway.
    """
    if is_mysql(bind):
        return mysql.insert(table).prefix_with("IGNORE")
    return sqlite.insert(table).on_conflict_do_nothing()


def upsert(
    bind: Engine | Connection,
    table: Table,
    values: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    key_columns: Sequence[str],
    update_columns: Sequence[str],
) -> Insert:
    """Returns an INSERT that updates `update_columns` when the row's key already exists.

    Args:
        bind: the engine or connection the statement will run on (selects the dialect).
        table: the table.
        values: one row or many.
        key_columns: the unique key the conflict is detected on (SQLite needs it named).
        update_columns: the columns overwritten with the new row's values on conflict.
    """
    if is_mysql(bind):
        statement = mysql.insert(table).values(values)
        return statement.on_duplicate_key_update(
            {name: statement.inserted[name] for name in update_columns}
        )
    lite = sqlite.insert(table).values(values)
    return lite.on_conflict_do_update(
        index_elements=list(key_columns),
        set_={name: lite.excluded[name] for name in update_columns},
    )


SCHEMA_BEHIND_ERRORS = frozenset({1054, 1146})
"""MySQL/MariaDB: unknown column, table does not exist (SQLite says so as OperationalError)."""


def is_schema_behind(error: BaseException) -> bool:
    """Tells whether a database error says the schema lacks a table or column the code uses.

    The code was rolled out before its migrations (`rbr db upgrade`): an operator's fix, like
    a database outage, not a reason to give a message up.
    """
    if not isinstance(error, ProgrammingError) or error.orig is None or not error.orig.args:
        return False
    return error.orig.args[0] in SCHEMA_BEHIND_ERRORS


def is_transient_db_error(error: BaseException) -> bool:
    """Tells whether a database error is an outage (retry) rather than a bug or bad data."""
    if isinstance(error, OperationalError | DisconnectionError) or is_schema_behind(error):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated
