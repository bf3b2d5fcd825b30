"""The shared multi-row INSERTs store exactly what SQLAlchemy's own executemany stores.

On the notifier's tables, the first to use them (the registrar's are in its own tests).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Table, insert, select, text
from sqlalchemy.exc import DBAPIError

from rbr_runtime.db import bulk
from rbr_runtime.db.bulk import _compiled, insert_rows, literal
from rbr_runtime.db.driver import speed_up_datetimes
from rbr_runtime.db.engine import insert_ignore, make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_runtime.db.tables import alerts, notifications, notifier_deliveries

T0 = datetime(2026, 12, 2, 16, 5, 7, 123456, tzinfo=UTC)
HOSTILE = "'; DROP TABLE alerts; -- \\' \" \0 \r\n \x1a %s %(x)s 100% \u202e 🦀 é\\"
Rows = Callable[[str], list[dict[str, Any]]]


def alert_rows(prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "alert_id": f"{prefix}-{i}",
            "dedupe_key": f"analysis:bucket-{i}:finding",
            "type": "analysis_finding",
            "severity": "high",
            "state": "firing",
            "bucket": None if i == 1 else f"bucket-{i}",
            "title": "Connexion réussie ✓ 'quoted' \\ back\\slash" if i else HOSTILE,
            "detail": "line one\nline two; DROP TABLE alerts; --",
            "source": "/rbr/analyst",
            "context": {"nested": {"n": [1, 2.5, None, "ü"]}, "big": 2**62}
            if i
            else {"q": HOSTILE},
            "fired_at": T0 + timedelta(seconds=i),
            # An offset other than UTC's takes the bind processor's way.
            "last_seen_at": T0.replace(microsecond=0).astimezone(timezone(timedelta(hours=5))),
            "repeats": 0,
            "last_event_id": f"event-{i}",
            "updated_at": T0,
        }
        for i in range(3)
    ]


def delivery_rows(prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "alert_id": f"{prefix}-{i % 2}",
            "channel": f"channel-{i}",
            "kind": "trigger",
            "state": "pending",
            "attempts": 0,
            "created_at": T0,
            "updated_at": T0 + timedelta(microseconds=1),
        }
        for i in range(3)
    ]


def attempt_rows(prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "alert_id": f"{prefix}-{i}",
            "dedupe_key": None if i == 2 else f"key-{i}",
            "channel": "pager",
            "kind": "resolve",
            "attempt": i + 1,
            "status": "sent",
            "http_status": 200 if i else None,
            "error": HOSTILE if i == 1 else None,
            "created_at": T0,
        }
        for i in range(3)
    ]


CASES = [
    pytest.param(alerts, alert_rows, True, "alert_id", id="alerts"),
    pytest.param(notifier_deliveries, delivery_rows, True, "alert_id", id="deliveries"),
    pytest.param(notifications, attempt_rows, False, "alert_id", id="notifications"),
]


@pytest.mark.parametrize(("table", "rows", "ignore", "key"), CASES)
def test_multi_row_insert_stores_what_sqlalchemy_stores(
    mysql_engine: Engine, table: Table, rows: Rows, ignore: bool, key: str
) -> None:
    speed_up_datetimes(mysql_engine)
    columns = tuple(sorted(rows("x")[0]))
    assert _compiled(mysql_engine.dialect, table, columns, ignore) is not None  # the fast path
    with mysql_engine.connect() as connection:
        assert bulk._pymysql_escape(connection) is not None  # with literals written here
    _insert_both(mysql_engine, table, rows, ignore)

    assert _stored(mysql_engine, table, key, "ours") == _stored(mysql_engine, table, key, "sa")


@pytest.mark.parametrize(("table", "rows", "ignore", "key"), CASES)
def test_statements_cut_where_pymysql_cuts_them_store_the_same_rows(
    mysql_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    table: Table,
    rows: Rows,
    ignore: bool,
    key: str,
) -> None:
    speed_up_datetimes(mysql_engine)
    monkeypatch.setattr(bulk, "MAX_STATEMENT_CHARS", 200)  # about one row per statement
    _insert_both(mysql_engine, table, rows, ignore)

    assert _stored(mysql_engine, table, key, "ours") == _stored(mysql_engine, table, key, "sa")


@pytest.mark.parametrize(("table", "rows", "ignore", "key"), CASES)
def test_no_backslash_escapes_mode_takes_the_drivers_path(
    mysql_engine: Engine, table: Table, rows: Rows, ignore: bool, key: str
) -> None:
    with mysql_engine.begin() as connection:
        connection.execute(
            text("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")
        )
        assert bulk._pymysql_escape(connection) is None
        insert_rows(connection, table, rows("ours"), ignore=ignore)
        statement = insert_ignore(connection, table) if ignore else insert(table)
        connection.execute(statement, rows("sa"))
        connection.execute(text("SET SESSION sql_mode = DEFAULT"))

    assert _stored(mysql_engine, table, key, "ours") == _stored(mysql_engine, table, key, "sa")


class Colour(StrEnum):
    RED = "red'"


LITERALS = [
    "",
    "plain",
    HOSTILE,
    "".join(chr(c) for c in range(128)),
    0,
    -(2**63),
    2**64 + 1,
    None,
    True,
    False,
    1.5,
    -0.0,
    datetime(2026, 12, 2, 16, 5, 7),
    datetime(2026, 12, 2, 16, 5, 7, 1),
    datetime(1, 1, 1),
    T0,
    Colour.RED,
    b"\x00'\xff",
]


@pytest.mark.parametrize("value", LITERALS, ids=repr)
def test_literals_are_what_pymysql_writes(mysql_engine: Engine, value: Any) -> None:
    speed_up_datetimes(mysql_engine)
    with mysql_engine.connect() as connection:
        driver: Any = connection.connection.dbapi_connection
        assert literal(value, driver.escape) == driver.escape(value)
        assert literal(value, driver.escape) == driver.escape(value, dict(driver.encoders))


def test_insert_ignore_skips_what_exists_as_sqlalchemy_does(mysql_engine: Engine) -> None:
    with mysql_engine.begin() as connection:
        insert_rows(connection, notifier_deliveries, delivery_rows("a"), ignore=True)
        insert_rows(connection, notifier_deliveries, delivery_rows("a")[:2], ignore=True)
        changed = {**delivery_rows("a")[0], "state": "sent"}
        insert_rows(connection, notifier_deliveries, [changed], ignore=True)
        rows = connection.execute(select(notifier_deliveries)).all()
    assert len(rows) == 3
    assert {row.state for row in rows} == {"pending"}


def test_a_failed_insert_does_not_show_the_values(mysql_engine: Engine) -> None:
    speed_up_datetimes(mysql_engine)
    row = {**attempt_rows("a")[0], "error": "VALUE-NOT-TO-SHOW"}
    del row["channel"]  # NOT NULL, no default: the INSERT fails
    with mysql_engine.begin() as connection:
        assert bulk._pymysql_escape(connection) is not None
        with pytest.raises(DBAPIError) as failure:
            insert_rows(connection, notifications, [row])

    assert "VALUE-NOT-TO-SHOW" not in str(failure.value)
    assert "INSERT INTO notifications" in str(failure.value)


def test_rows_with_different_columns_are_refused(mysql_engine: Engine) -> None:
    first, second, _ = delivery_rows("a")
    del second["attempts"]
    with mysql_engine.begin() as connection, pytest.raises(ValueError, match="same columns"):
        insert_rows(connection, notifier_deliveries, [first, second], ignore=True)


def test_sqlite_keeps_sqlalchemys_path(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bulk.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        for table, rows, ignore, key in (case.values for case in CASES):
            _insert_both(engine, table, rows, ignore)  # type: ignore[arg-type]
            assert _stored(engine, table, key, "ours") == _stored(engine, table, key, "sa")  # type: ignore[arg-type]
    finally:
        engine.dispose()


def _insert_both(engine: Engine, table: Table, rows: Rows, ignore: bool) -> None:
    with engine.begin() as connection:
        insert_rows(connection, table, rows("ours"), ignore=ignore)
        statement = insert_ignore(connection, table) if ignore else insert(table)
        connection.execute(statement, rows("sa"))


def _stored(engine: Engine, table: Table, key: str, prefix: str) -> list[dict[str, Any]]:
    """Returns the rows of one path, without their ids and with the prefix taken out."""
    with engine.connect() as connection:
        found = connection.execute(
            select(table).where(table.c[key].like(f"{prefix}-%")).order_by(table.c.id)
        ).all()
    rows = []
    for row in found:
        values = dict(row._mapping)
        values.pop("id")
        values[key] = values[key].removeprefix(prefix)
        rows.append(values)
    assert len(rows) == 3 or table is notifier_deliveries
    return rows
