"""Window tallies: each parsed object's rows counted once per distinct value into its window.

The digest reads these (one row per value) instead of the window's rows; see the README.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, literal, null, select, union_all
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from rbr_analyst.event_kinds import (
    COMMAND_TYPES,
    DOWNLOAD_TYPES,
    FAILURE_TYPES,
    SUCCESS_TYPES,
    UNPARSED,
)
from rbr_analyst.rules import COMMAND_RULES, MAX_RULE_CHARS, CommandRule, match_command
from rbr_analyst.window_rows import Facet, Ranked, Totals, facet_columns, facet_condition, flag
from rbr_analyst.windows import Window
from rbr_runtime.db.engine import insert_ignore, is_mysql
from rbr_runtime.db.tables import bucket_source_ips, logs, window_objects, window_values

VALUE_LABELS = ("value", "value2", "value3")
RULES = {rule.key: rule for rule in COMMAND_RULES}


def fold_object(
    connection: Connection,
    name: str,
    sha256: str,
    interval: float,
    now_analysed: Callable[[Window], bool],
) -> int:
    """Folds one parsed object's rows into its windows' tallies; returns the rows folded.

    Each (object, ingestion moment) is folded once: a replay folds nothing. Windows for which
    `now_analysed(window)` is true are left alone (their digest was made already).
    """
    of_object = and_(logs.c.source_sha256 == sha256, logs.c.name == name)
    ingests = connection.execute(
        select(
            logs.c.created_at,
            func.count(),
            func.coalesce(func.sum(logs.c.log_size), 0),
            func.min(logs.c.event_time),
            func.max(logs.c.event_time),
        )
        .where(of_object)
        .group_by(logs.c.created_at)
    ).all()
    folded = 0
    for created_at, rows, size, first_event_at, last_event_at in ingests:
        window = Window.containing(name, created_at, interval)
        if now_analysed(window):
            continue
        marker = {
            "name": name,
            "source_sha256": sha256,
            "created_at": created_at,
            "window_start": window.start,
            "window_end": window.end,
            "row_count": int(rows),
            "byte_count": int(size),
            "first_event_at": first_event_at,
            "last_event_at": last_event_at,
        }
        noted = connection.execute(insert_ignore(connection, window_objects).values(marker))
        if not noted.rowcount:
            continue  # folded before
        _fold_values(
            connection, window, and_(of_object, logs.c.created_at == created_at), created_at
        )
        folded += int(rows)
    return folded


def _facet_query(facet: Facet, rows: ColumnElement[bool]) -> Select[Any]:
    columns = list(facet_columns(facet))
    padded = [*columns, *[null() for _ in range(3 - len(columns))]]
    values = [column.label(label) for column, label in zip(padded, VALUE_LABELS, strict=True)]
    return (
        select(
            literal(facet.value).label("facet"),
            *values,
            func.count().label("hits"),
            func.min(logs.c.id).label("first_id"),
        )
        .where(rows, facet_condition(facet))
        .group_by(*columns)
    )


def _fold_values(
    connection: Connection, window: Window, rows: ColumnElement[bool], created_at: datetime
) -> None:
    counts = union_all(
        *[_facet_query(facet, rows) for facet in Facet if facet is not Facet.COMMAND]
    )
    if is_mysql(connection):
        _fold_on_server(connection, window, rows, created_at, counts)
    else:
        _fold_here(connection, window, connection.execute(counts).all(), created_at)
    commands = connection.execute(_facet_query(Facet.COMMAND, rows)).all()
    _add(connection, window, commands)


def _fold_here(
    connection: Connection, window: Window, counted: Sequence[Any], created_at: datetime
) -> None:
    """SQLite: the object's counts are added to the tallies by the analyst."""
    _add(connection, window, counted)
    seen = sorted(str(value) for facet, value, *_ in counted if facet == Facet.SOURCE_IP)
    if seen:
        connection.execute(
            _note_sources(connection),
            [{"name": window.bucket, "source_ip": ip, "first_seen_at": created_at} for ip in seen],
        )


def _add(connection: Connection, window: Window, counted: Sequence[Any]) -> None:
    """Adds counts (facet, value, value2, value3, hits, first id) to the window's tallies."""
    pad_space = is_mysql(connection)
    tallies = [
        {
            "name": window.bucket,
            "window_start": window.start,
            "window_end": window.end,
            "facet": str(facet),
            "value_sha256": _value_key(pad_space, value, value2, value3),
            "value": value,
            "value2": value2,
            "value3": value3,
            "rule": _rule_key(str(value)[:MAX_RULE_CHARS]) if facet == Facet.COMMAND else None,
            "hits": int(hits),
            "first_id": int(first_id),
        }
        for facet, value, value2, value3, hits, first_id in counted
    ]
    tallies.sort(key=lambda tally: (tally["facet"], tally["value_sha256"]))  # one lock order
    if tallies:
        connection.execute(_add_tallies(connection), tallies)


@functools.lru_cache(maxsize=1024)
def _rule_key(command: str) -> str | None:
    """The key of the attack rule a command matches (one object's commands recur in the next).

    Called with the part of the command the rules read, which bounds the cache's memory.
    """
    rule = match_command(command)
    return None if rule is None else rule.key


def _fold_on_server(
    connection: Connection,
    window: Window,
    rows: ColumnElement[bool],
    created_at: datetime,
    counts: Any,
) -> None:
    """MySQL: the same fold as INSERT ... SELECT, no value leaving the server."""
    counted = counts.subquery("counted")
    facet, value, value2, value3, hits, first_id = counted.c
    key = func.sha2(
        func.concat(_sql_key_part(value), ",", _sql_key_part(value2), ",", _sql_key_part(value3)),
        256,
    )
    fold = mysql.insert(window_values).from_select(
        [column.name for column in window_values.c],
        select(
            literal(window.bucket),
            literal(window.start, window_values.c.window_start.type),
            literal(window.end, window_values.c.window_end.type),
            facet,
            key,
            value,
            value2,
            value3,
            null(),
            hits,
            first_id,
        ).order_by(facet, key),  # one lock order
    )
    connection.execute(
        fold.on_duplicate_key_update(
            hits=window_values.c.hits + fold.inserted.hits,
            first_id=func.least(window_values.c.first_id, fold.inserted.first_id),
        )
    )
    first_seen = mysql.insert(bucket_source_ips).from_select(
        ["name", "source_ip", "first_seen_at"],
        select(
            literal(window.bucket),
            logs.c.source_ip,
            literal(created_at, bucket_source_ips.c.first_seen_at.type),
        )
        .where(rows, logs.c.source_ip.is_not(None))
        .group_by(logs.c.source_ip)
        .order_by(logs.c.source_ip),
    )
    connection.execute(
        first_seen.on_duplicate_key_update(
            first_seen_at=func.least(
                bucket_source_ips.c.first_seen_at, first_seen.inserted.first_seen_at
            )
        )
    )


def _sql_key_part(value: Any) -> Any:
    """A value as unambiguous text: its length, a colon and the value; `n` for NULL.

    Trailing spaces are dropped: MySQL compares strings so (PAD SPACE), and the key must make
    one tally of the values a GROUP BY over the rows makes one group of.
    """
    trimmed = func.rtrim(value)
    return func.ifnull(func.concat(func.char_length(trimmed), ":", trimmed), "n")


def _value_key(pad_space: bool, *values: Any) -> str:
    """The tally key of a value (or values), as `_sql_key_part` makes it on the server."""
    parts = [
        "n" if value is None else _key_part(str(value).rstrip(" ") if pad_space else str(value))
        for value in values
    ]
    return hashlib.sha256(",".join(parts).encode()).hexdigest()


def _key_part(text: str) -> str:
    return f"{len(text)}:{text}"


def _add_tallies(connection: Connection) -> Any:
    """An INSERT (for many rows) that adds to the counts of values already tallied."""
    table = window_values
    if is_mysql(connection):
        statement = mysql.insert(table)
        return statement.on_duplicate_key_update(
            hits=table.c.hits + statement.inserted.hits,
            first_id=func.least(table.c.first_id, statement.inserted.first_id),
        )
    lite = sqlite.insert(table)
    return lite.on_conflict_do_update(
        index_elements=["name", "window_start", "window_end", "facet", "value_sha256"],
        set_={
            "hits": table.c.hits + lite.excluded.hits,
            "first_id": func.min(table.c.first_id, lite.excluded.first_id),
        },
    )


def _note_sources(connection: Connection) -> Any:
    """An INSERT (for many rows) that keeps each source IP's earliest sighting."""
    table = bucket_source_ips
    if is_mysql(connection):
        statement = mysql.insert(table)
        return statement.on_duplicate_key_update(
            first_seen_at=func.least(table.c.first_seen_at, statement.inserted.first_seen_at)
        )
    lite = sqlite.insert(table)
    return lite.on_conflict_do_update(
        index_elements=["name", "source_ip"],
        set_={"first_seen_at": func.min(table.c.first_seen_at, lite.excluded.first_seen_at)},
    )


class WindowTallies:
    """Reads a window's digest figures from its tallies (one row per distinct value)."""

    def __init__(self, connection: Connection, window: Window, top_n: int) -> None:
        self._connection = connection
        self._window = window
        self._top_n = top_n

    def _of_window(self, table: Any) -> ColumnElement[bool]:
        return and_(
            table.c.name == self._window.bucket,
            table.c.window_start == self._window.start,
            table.c.window_end == self._window.end,
        )

    def _of_facet(self, facet: Facet) -> ColumnElement[bool]:
        return and_(self._of_window(window_values), window_values.c.facet == facet.value)

    def complete(self) -> bool:
        """Tells whether the tallies hold every object with rows in the window, and no other.

        Objects are told apart by their ingestion moment (each parse of an object stamps its
        rows with one `created_at`, to the microsecond): the window's moments are read from the
        `(name, created_at)` index by a loose index scan, one step per moment, not per row.
        """
        folded = self._connection.execute(
            select(window_objects.c.created_at).where(self._of_window(window_objects))
        ).scalars()
        stored = self._connection.execute(
            select(logs.c.created_at)
            .where(
                logs.c.name == self._window.bucket,
                logs.c.created_at >= self._window.start,
                logs.c.created_at < self._window.end,
            )
            .group_by(logs.c.name, logs.c.created_at)
        ).scalars()
        moments = set(folded)
        return bool(moments) and moments == set(stored)

    def _distinct(self, facet: Facet) -> int:
        return int(
            self._connection.execute(
                select(func.count()).select_from(window_values).where(self._of_facet(facet))
            ).scalar_one()
        )

    def totals(self) -> Totals:
        """Returns the window's header figures."""
        objects = self._connection.execute(
            select(
                func.coalesce(func.sum(window_objects.c.row_count), 0),
                func.min(window_objects.c.first_event_at),
                func.max(window_objects.c.last_event_at),
                func.coalesce(func.sum(window_objects.c.byte_count), 0),
            ).where(self._of_window(window_objects))
        ).one()
        kind, hits = window_values.c.value, window_values.c.hits
        counts = self._connection.execute(
            select(
                func.sum(flag(kind.in_(FAILURE_TYPES), hits)),
                func.sum(flag(kind.in_(SUCCESS_TYPES), hits)),
                func.sum(flag(kind.in_(COMMAND_TYPES), hits)),
                func.sum(flag(kind.in_(DOWNLOAD_TYPES), hits)),
                func.sum(flag(kind == UNPARSED, hits)),
            ).where(self._of_facet(Facet.EVENT_TYPE))
        ).one()
        return Totals(
            rows=int(objects[0]),
            first_event_at=objects[1],
            last_event_at=objects[2],
            distinct_source_ips=self._distinct(Facet.SOURCE_IP),
            distinct_sessions=self._distinct(Facet.SESSION),
            bytes=int(objects[3]),
            login_failures=int(counts[0] or 0),
            login_successes=int(counts[1] or 0),
            commands=int(counts[2] or 0),
            downloads=int(counts[3] or 0),
            unparsed=int(counts[4] or 0),
        )

    def top(self, facet: Facet) -> Ranked:
        """Returns the facet's most frequent values, ties in value order."""
        columns = _value_columns(facet)
        hits = window_values.c.hits
        rows = self._connection.execute(
            select(*columns, hits)
            .where(self._of_facet(facet))
            .order_by(hits.desc(), *columns)
            .limit(self._top_n)
        ).all()
        return Ranked([tuple(row) for row in rows], self._distinct(facet) if rows else 0)

    def new_source_ips(self) -> Ranked:
        """Source IPs of the window that the bucket had not seen before the window."""
        value, hits = window_values.c.value, window_values.c.hits
        seen = bucket_source_ips
        rows = self._connection.execute(
            select(value, hits, func.count().over().label("distinct_values"))
            .join_from(
                window_values,
                seen,
                and_(seen.c.name == window_values.c.name, seen.c.source_ip == value),
            )
            .where(self._of_facet(Facet.SOURCE_IP), seen.c.first_seen_at >= self._window.start)
            .order_by(hits.desc(), value)
            .limit(self._top_n)
        ).all()
        return Ranked([tuple(row[:-1]) for row in rows], int(rows[0][-1]) if rows else 0)

    def commands(self) -> Iterator[tuple[str, int, CommandRule | None]]:
        """Yields every distinct command of the window with its count and rule (streamed)."""
        statement = select(window_values.c.value, window_values.c.hits, window_values.c.rule).where(
            self._of_facet(Facet.COMMAND)
        )
        result = self._connection.execution_options(stream_results=True, yield_per=2000).execute(
            statement
        )
        for command, count, rule in result:
            yield str(command), int(count), RULES.get(rule) if rule else None

    def event_types(self) -> list[tuple[str, int, int]]:
        """Returns (event type, lowest row id, rows) for every event type of the window."""
        tallies = window_values.c
        rows = self._connection.execute(
            select(tallies.value, tallies.first_id, tallies.hits).where(
                self._of_facet(Facet.EVENT_TYPE)
            )
        ).all()
        return [(str(row[0]), int(row[1]), int(row[2])) for row in rows]


def forget_window(connection: Connection, window: Window) -> None:
    """Deletes a window's tallies (once its analysis is stored, they are not read again)."""
    for table in (window_values, window_objects):
        connection.execute(
            delete(table).where(
                table.c.name == window.bucket,
                table.c.window_start == window.start,
                table.c.window_end == window.end,
            )
        )


def _value_columns(facet: Facet) -> list[Any]:
    count = len(facet_columns(facet))
    return [window_values.c.value, window_values.c.value2, window_values.c.value3][:count]
