"""A window's digest figures from its rows in `logs`, one grouped query per list.

Used for windows the tallies do not hold whole, and as the tallies' oracle in tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, case, exists, func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from rbr_analyst.event_kinds import (
    COMMAND_TYPES,
    DOWNLOAD_TYPES,
    FAILURE_TYPES,
    HTTP_TYPES,
    SUCCESS_TYPES,
    UNPARSED,
)
from rbr_analyst.rules import CommandRule, match_command
from rbr_analyst.windows import Window
from rbr_runtime.db.tables import logs


class Facet(StrEnum):
    """A top list of the digest: what is counted."""

    EVENT_TYPE = "event_type"
    SOURCE_IP = "source_ip"
    SESSION = "session"
    USERNAME = "username"
    PASSWORD = "password"  # noqa: S105 - a facet's name, not a secret
    HTTP_PATH = "http_path"
    LOGIN = "login"
    DOWNLOAD = "download"
    COMMAND = "command"


@dataclass(frozen=True)
class Totals:
    """The window's header figures."""

    rows: int
    first_event_at: datetime | None
    last_event_at: datetime | None
    distinct_source_ips: int
    distinct_sessions: int
    bytes: int
    login_failures: int
    login_successes: int
    commands: int
    downloads: int
    unparsed: int


@dataclass(frozen=True)
class Ranked:
    """The first rows of a facet by count (value columns, then count), and the distinct total."""

    rows: list[tuple[Any, ...]]
    distinct: int


def is_download(event_type: Any, file_sha256: Any) -> ColumnElement[bool]:
    """A download: a download event, or any non-HTTP record naming a file's hash."""
    return or_(
        event_type.in_(DOWNLOAD_TYPES),
        and_(file_sha256.is_not(None), event_type.not_in(HTTP_TYPES)),
    )


def facet_columns(facet: Facet) -> tuple[Any, ...]:
    """Returns the `logs` columns a facet counts."""
    columns: dict[Facet, tuple[Any, ...]] = {
        Facet.EVENT_TYPE: (logs.c.event_type,),
        Facet.SOURCE_IP: (logs.c.source_ip,),
        Facet.SESSION: (logs.c.session,),
        Facet.USERNAME: (logs.c.username,),
        Facet.PASSWORD: (logs.c.password,),
        Facet.HTTP_PATH: (logs.c.url,),
        Facet.LOGIN: (logs.c.source_ip, logs.c.username, logs.c.password),
        Facet.DOWNLOAD: (logs.c.url, logs.c.file_sha256),
        Facet.COMMAND: (logs.c.command,),
    }
    return columns[facet]


def facet_condition(facet: Facet) -> ColumnElement[bool]:
    """Returns which `logs` rows a facet counts."""
    if facet is Facet.LOGIN:
        return logs.c.event_type.in_(SUCCESS_TYPES)
    if facet is Facet.DOWNLOAD:
        return is_download(logs.c.event_type, logs.c.file_sha256)
    (column,) = facet_columns(facet)
    if facet is Facet.HTTP_PATH:
        return and_(column.is_not(None), logs.c.event_type.in_(HTTP_TYPES))
    not_null: ColumnElement[bool] = column.is_not(None)
    return not_null


def flag(condition: ColumnElement[bool], weight: Any = 1) -> Any:
    """Returns `weight` where the condition holds, else 0 (to sum)."""
    return case((condition, weight), else_=0)


class WindowRows:
    """Reads a window's digest figures from its rows."""

    def __init__(self, connection: Connection, window: Window, top_n: int) -> None:
        self._connection = connection
        self._window = window
        self._top_n = top_n

    def _in_window(self) -> ColumnElement[bool]:
        return and_(
            logs.c.name == self._window.bucket,
            logs.c.created_at >= self._window.start,
            logs.c.created_at < self._window.end,
        )

    def totals(self) -> Totals:
        """Returns the window's header figures."""
        kind = logs.c.event_type
        row = self._connection.execute(
            select(
                func.count(),
                func.min(logs.c.event_time),
                func.max(logs.c.event_time),
                func.count(logs.c.source_ip.distinct()),
                func.count(logs.c.session.distinct()),
                func.coalesce(func.sum(logs.c.log_size), 0),
                func.sum(flag(kind.in_(FAILURE_TYPES))),
                func.sum(flag(kind.in_(SUCCESS_TYPES))),
                func.sum(flag(kind.in_(COMMAND_TYPES))),
                func.sum(flag(kind.in_(DOWNLOAD_TYPES))),
                func.sum(flag(kind == UNPARSED)),
            ).where(self._in_window())
        ).one()
        return Totals(
            rows=int(row[0]),
            first_event_at=row[1],
            last_event_at=row[2],
            distinct_source_ips=int(row[3]),
            distinct_sessions=int(row[4]),
            bytes=int(row[5] or 0),
            login_failures=int(row[6] or 0),
            login_successes=int(row[7] or 0),
            commands=int(row[8] or 0),
            downloads=int(row[9] or 0),
            unparsed=int(row[10] or 0),
        )

    def top(self, facet: Facet) -> Ranked:
        """Returns the facet's most frequent values, ties in value order."""
        columns = facet_columns(facet)
        hits = func.count().label("hits")
        rows = self._connection.execute(
            select(*columns, hits, func.count().over().label("distinct_values"))
            .where(self._in_window(), facet_condition(facet))
            .group_by(*columns)
            .order_by(hits.desc(), *columns)
            .limit(self._top_n)
        ).all()
        return Ranked([tuple(row[:-1]) for row in rows], int(rows[0][-1]) if rows else 0)

    def new_source_ips(self) -> Ranked:
        """Source IPs of the window that no earlier window of this bucket saw."""
        earlier = logs.alias("earlier")
        seen_before = exists().where(
            earlier.c.source_ip == logs.c.source_ip,
            earlier.c.name == self._window.bucket,
            earlier.c.created_at < self._window.start,
        )
        hits = func.count().label("hits")
        rows = self._connection.execute(
            select(logs.c.source_ip, hits, func.count().over().label("distinct_values"))
            .where(self._in_window(), logs.c.source_ip.is_not(None), ~seen_before)
            .group_by(logs.c.source_ip)
            .order_by(hits.desc(), logs.c.source_ip)
            .limit(self._top_n)
        ).all()
        return Ranked([tuple(row[:-1]) for row in rows], int(rows[0][-1]) if rows else 0)

    def commands(self) -> Iterator[tuple[str, int, CommandRule | None]]:
        """Yields every distinct command of the window with its count and rule (streamed)."""
        statement = (
            select(logs.c.command, func.count())
            .where(self._in_window(), logs.c.command.is_not(None))
            .group_by(logs.c.command)
        )
        result = self._connection.execution_options(stream_results=True, yield_per=2000).execute(
            statement
        )
        for command, count in result:
            yield str(command), int(count), match_command(str(command))

    def event_types(self) -> list[tuple[str, int, int]]:
        """Returns (event type, lowest row id, rows) for every event type of the window."""
        rows = self._connection.execute(
            select(logs.c.event_type, func.min(logs.c.id), func.count())
            .where(self._in_window())
            .group_by(logs.c.event_type)
        ).all()
        return [(str(row[0]), int(row[1]), int(row[2])) for row in rows]


def raw_records(connection: Connection, ids: list[int]) -> dict[int, str]:
    """Returns the raw records (`logs.log`) of the rows with these ids."""
    if not ids:
        return {}
    rows = connection.execute(select(logs.c.id, logs.c.log).where(logs.c.id.in_(ids))).all()
    return {int(row[0]): row[1] for row in rows}
