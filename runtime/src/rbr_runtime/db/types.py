"""Column types that behave the same on MySQL and SQLite."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, LargeBinary, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime, stored as a naive UTC DATETIME with microseconds.

    Accepts aware datetimes only, so local time can never slip into the database.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        """Uses DATETIME(6) on MySQL, whose default drops the microseconds."""
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Converts an aware datetime to naive UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Marks a stored datetime as UTC."""
        return None if value is None else value.replace(tzinfo=UTC)


LongText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
"""Text up to 16 MiB on MySQL (TEXT stops at 64 KiB)."""

LongBlob = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
"""Bytes up to 4 GiB on MySQL."""


class UtcNow(FunctionElement[datetime]):
    """`DEFAULT CURRENT_TIMESTAMP` for a UtcDateTime column, with MySQL's microseconds.

    MySQL refuses `DEFAULT CURRENT_TIMESTAMP` on a DATETIME(6) column; it needs the precision
    spelled out. Sessions run in UTC (see engine.make_engine), so the value is UTC on both.
    """

    type = DateTime()
    inherit_cache = True


@compiles(UtcNow)
def _utc_now_default(element: UtcNow, compiler: Any, **kwargs: Any) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(UtcNow, "sqlite")
def _utc_now_sqlite(element: UtcNow, compiler: Any, **kwargs: Any) -> str:
    # SQLite compares timestamps as text: store six fractional digits, as SQLAlchemy writes
    # them, or "08:00:00" would sort before a bound "08:00:00.000000".
    return "(strftime('%Y-%m-%d %H:%M:%f000', 'now'))"


@compiles(UtcNow, "mysql")
@compiles(UtcNow, "mariadb")
def _utc_now_mysql(element: UtcNow, compiler: Any, **kwargs: Any) -> str:
    return "CURRENT_TIMESTAMP(6)"
