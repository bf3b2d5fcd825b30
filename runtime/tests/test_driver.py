"""The cheaper datetime conversions give what PyMySQL's own give, in text and in values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pymysql import converters
from sqlalchemy import Engine, insert, select, text

from rbr_runtime.db.driver import convert_datetime, escape_datetime, speed_up_datetimes
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.tables import notifications

MOMENTS = [
    datetime(2026, 12, 2, 16, 5, 7, 123456),
    datetime(2026, 12, 2, 16, 5, 7),
    datetime(2026, 12, 2, 16, 5, 7, 1),
    datetime(5, 1, 2, 3, 4, 5, 600000),
    datetime(9999, 12, 31, 23, 59, 59, 999999),
    datetime(2026, 12, 2, 16, 5, 7, 5, tzinfo=timezone(timedelta(hours=2))),
]
TEXTS = [
    "2026-12-02 16:05:07.123456",
    "2026-12-02 16:05:07.000000",
    "2026-12-02 16:05:07",
    "0005-01-02 03:04:05.600000",
    "0000-00-00 00:00:00",
    "0000-00-00 00:00:00.000000",
    "2007-02-31 23:06:20",
    "2007-02-25T23:06:20",
    "2007-02-25 23:06:20.12",
    "2007-02-25 23:06:20+01:00",
    "2007-02-25",
    "garbage",
]


@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_escape_writes_what_pymysql_writes(moment: datetime) -> None:
    assert escape_datetime(moment) == converters.escape_datetime(moment)


@pytest.mark.parametrize("value", TEXTS)
def test_convert_reads_what_pymysql_reads(value: str) -> None:
    assert convert_datetime(value) == converters.convert_datetime(value)
    assert convert_datetime(value.encode()) == converters.convert_datetime(value.encode())


def test_round_trips_on_mariadb_match_the_default_ones(mysql_database_url: str) -> None:
    plain, fast = make_engine(mysql_database_url), make_engine(mysql_database_url)
    speed_up_datetimes(fast)
    speed_up_datetimes(fast)  # a second call adds nothing
    try:
        for moment in (m.replace(tzinfo=UTC) for m in MOMENTS[:5]):
            assert _round_trip(fast, moment) == _round_trip(plain, moment) == moment
        for engine in (plain, fast):
            with engine.connect() as connection:
                zero = connection.execute(
                    text("SELECT CAST('2026-12-02 16:05:07' AS DATETIME(6)), NOW(6) IS NOT NULL")
                ).one()
            assert zero[0] == datetime(2026, 12, 2, 16, 5, 7)
    finally:
        plain.dispose()
        fast.dispose()


def _round_trip(engine: Engine, moment: datetime) -> datetime:
    """Writes a moment into a DATETIME(6) column and reads it back, in a rolled-back transaction."""
    with engine.connect() as connection, connection.begin() as transaction:
        connection.execute(
            insert(notifications).values(
                channel="driver-test", kind="test", attempt=1, status="sent", created_at=moment
            )
        )
        value: datetime = connection.execute(
            select(notifications.c.created_at).where(notifications.c.channel == "driver-test")
        ).scalar_one()
        transaction.rollback()
    return value
