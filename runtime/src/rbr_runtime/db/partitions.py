"""Daily RANGE partitions on MySQL/MariaDB: created days ahead, dropped whole for retention.

A table partitioned here has one partition per UTC day of a DATETIME column (`pYYYYMMDD`
holds the rows before the next midnight) and a catch-all `pfuture` (MAXVALUE), so an insert
never fails for a missing day; maintenance splits the catch-all into days before they come.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from rbr_runtime.db.engine import is_mysql

log = logging.getLogger(__name__)

CATCH_ALL = "pfuture"
"""The partition of every row beyond the last day created (VALUES LESS THAN MAXVALUE)."""

_DAY_NAME = re.compile(r"p(\d{8})")


@dataclass(frozen=True)
class DayPartition:
    """One day's partition: it holds the rows before `end` (the next day's midnight, UTC)."""

    name: str
    day: date

    @property
    def end(self) -> datetime:
        """Returns the first moment the partition does not hold."""
        return day_start(self.day + timedelta(days=1))


def day_start(day: date) -> datetime:
    """Returns midnight UTC at the start of the day."""
    return datetime.combine(day, time(), UTC)


def partition_name(day: date) -> str:
    """Returns the name of a day's partition, e.g. p20261202."""
    return f"p{day:%Y%m%d}"


def partition_definitions(days: Sequence[date], *, catch_all: bool = True) -> str:
    """Returns the partition list for DDL: the days in order, then the catch-all."""
    parts = [
        f"PARTITION {partition_name(day)} VALUES LESS THAN "
        f"('{day + timedelta(days=1):%Y-%m-%d} 00:00:00')"
        for day in days
    ]
    if catch_all:
        parts.append(f"PARTITION {CATCH_ALL} VALUES LESS THAN (MAXVALUE)")
    return "(" + ", ".join(parts) + ")"


def days_between(first: date, last: date) -> list[date]:
    """Returns every day from first to last, both included."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def day_partitions(connection: Connection, table: str) -> list[DayPartition] | None:
    """Returns the table's day partitions in order, or None if it is not partitioned."""
    names = (
        connection.execute(
            text(
                "SELECT PARTITION_NAME FROM information_schema.PARTITIONS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table "
                "AND PARTITION_NAME IS NOT NULL ORDER BY PARTITION_ORDINAL_POSITION"
            ),
            {"table": table},
        )
        .scalars()
        .all()
    )
    if not names:
        return None
    days = []
    for name in names:
        match = _DAY_NAME.fullmatch(name)
        if match:
            days.append(DayPartition(name, datetime.strptime(match[1], "%Y%m%d").date()))
    return days


def ensure_days_ahead(engine: Engine, table: str, today: date, days_ahead: int) -> list[str]:
    """Creates the day partitions up to today + days_ahead (MySQL; a no-op elsewhere).

    The catch-all is reorganised into the missing days (its rows, if an insert came before
    its day's partition, move to their day). Two replicas doing it at once: the second finds
    the partitions there and does nothing.

    Returns:
        The names of the partitions created.
    """
    if not is_mysql(engine):
        return []
    try:
        return _add_days(engine, table, today, days_ahead)
    except OperationalError as error:
        created_meanwhile = _missing_days(engine, table, today, days_ahead) == []
        if not created_meanwhile:
            raise
        log.info("partitions of %s created meanwhile by another process (%s)", table, error)
        return []


def _missing_days(engine: Engine, table: str, today: date, days_ahead: int) -> list[date] | None:
    """Returns the days to create, or None if the table is not partitioned."""
    with engine.connect() as connection:
        partitions = day_partitions(connection, table)
    if partitions is None:
        return None
    last = partitions[-1].day if partitions else today - timedelta(days=1)
    first = max(last + timedelta(days=1), today)
    return days_between(first, today + timedelta(days=days_ahead))


def _add_days(engine: Engine, table: str, today: date, days_ahead: int) -> list[str]:
    missing = _missing_days(engine, table, today, days_ahead)
    if not missing:
        return []
    with engine.begin() as connection:
        connection.execute(
            text(
                f"ALTER TABLE {table} REORGANIZE PARTITION {CATCH_ALL} INTO "
                f"{partition_definitions(missing)}"
            )
        )
    names = [partition_name(day) for day in missing]
    log.info("created partitions %s of %s", ", ".join(names), table)
    return names


def drop_days_before(engine: Engine, table: str, cutoff: datetime) -> tuple[list[str], int]:
    """Drops the day partitions that hold only rows before cutoff (MySQL; else a no-op).

    Returns:
        The names of the partitions dropped and how many rows they held.
    """
    if not is_mysql(engine):
        return [], 0
    with engine.connect() as connection:
        partitions = day_partitions(connection, table) or []
    expired = [p.name for p in partitions if p.end <= cutoff]
    if not expired:
        return [], 0
    names = ", ".join(expired)
    with engine.begin() as connection:
        rows = int(
            connection.execute(
                text(f"SELECT COUNT(*) FROM {table} PARTITION ({names})")  # noqa: S608
            ).scalar_one()
        )
        connection.execute(text(f"ALTER TABLE {table} DROP PARTITION {names}"))
    log.info("dropped partitions %s of %s (%d rows)", names, table, rows)
    return expired, rows
