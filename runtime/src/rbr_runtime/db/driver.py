"""Cheaper datetime conversions for PyMySQL connections: their most frequent values.

PyMySQL writes a datetime with `str.format` over seven fields (about 5 µs) and reads one with
a regular expression and seven `int` calls (about 4 µs); a registration writes five (its row's
and its outbox message's), a notifier's delivery about six. `datetime.isoformat` and
`datetime.fromisoformat` do the same in C in a fifth of the time. The text is byte for byte
what PyMySQL makes and the values what it returns; anything else (an aware datetime, MySQL's
zero dates) still goes through PyMySQL's own functions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymysql import converters
from pymysql.constants import FIELD_TYPE
from sqlalchemy import Engine, event

_READ_TYPES = (FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP)


def speed_up_datetimes(engine: Engine) -> None:
    """Makes the engine's new PyMySQL connections convert datetimes the cheaper way."""
    if engine.dialect.driver != "pymysql" or event.contains(engine, "connect", _install):
        return
    event.listen(engine, "connect", _install)


def escape_datetime(value: datetime, mapping: Any = None) -> str:
    """Returns a datetime as a MySQL literal, as `pymysql.converters.escape_datetime` does."""
    if value.tzinfo is not None:
        return converters.escape_datetime(value, mapping)
    return "'" + value.isoformat(" ") + "'"


def convert_datetime(value: str | bytes) -> Any:
    """Returns a DATETIME/TIMESTAMP value, as `pymysql.converters.convert_datetime` does."""
    text = value.decode("ascii") if isinstance(value, bytes | bytearray) else value
    # Only MySQL's own layout (`YYYY-MM-DD hh:mm:ss[.ffffff]`) takes the fast way: fromisoformat
    # accepts more (offsets, a T), which PyMySQL would return otherwise.
    if len(text) not in (19, 26) or text[10] != " " or text[4] != "-":
        return converters.convert_datetime(value)
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # zero dates and the like: PyMySQL returns them as text
        return converters.convert_datetime(value)


def _install(dbapi_connection: Any, _record: Any) -> None:
    encoders = dict(dbapi_connection.encoders)
    encoders[datetime] = escape_datetime
    dbapi_connection.encoders = encoders
    decoders = dict(dbapi_connection.decoders)
    for field_type in _READ_TYPES:
        decoders[field_type] = convert_datetime
    dbapi_connection.decoders = decoders
