"""Comparing `logs` rows with the simulator's ground truth, record by record.

Each generated record says what a correct parser finds in it (format, event type, time and
key fields, as written in the log). A stored field is that value cleaned of control
characters and cut to its column, so the expectation applies the parser's own cleaning rules
(themselves unit-tested); everything else must be equal. Fields the ground truth leaves
empty are not compared (the parser may find more, e.g. a user agent in a raw request).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select

from rbr_runtime.db.tables import logs

if TYPE_CHECKING:
    from rbr_simulator.records import LogRecord

WHOLE_SECOND_FORMATS = {"sshd", "http"}  # their timestamps have no fraction


def expected_row(record: LogRecord, max_log_bytes: int = 65_536) -> dict[str, Any]:
    """Returns the columns a correct parser stores for a generated record."""
    from rbr_parser import formats  # noqa: PLC0415 - only parser tests import this
    from rbr_parser.sanitize import clean_optional, cut_utf8  # noqa: PLC0415

    moment = record.timestamp
    if record.format.value in WHOLE_SECOND_FORMATS:
        moment = moment.replace(microsecond=0)
    expected: dict[str, Any] = {
        "log_format": record.format.value,
        "event_type": record.event_type.value,
        "event_time": moment,
        "log_size": record.size,
        "log": cut_utf8(record.text.removesuffix("\n"), max_log_bytes),
        "message": clean_optional(record.message, formats.MAX_TEXT, multiline=True),
    }
    optional = {
        "level": record.level,
        "protocol": record.protocol,
        "source_ip": record.src_ip,
        "source_port": record.src_port,
        "username": clean_optional(record.username, formats.MAX_NAME),
        "password": clean_optional(record.password, formats.MAX_NAME),
        "command": clean_optional(record.command, formats.MAX_TEXT, multiline=True),
        "url": clean_optional(record.url, formats.MAX_URL),
        "file_sha256": record.sha256,
        "session": record.session,
        "http_method": record.http_method,
        "http_status": record.http_status,
        "user_agent": None
        if record.user_agent == "-"
        else clean_optional(record.user_agent, formats.MAX_USER_AGENT),
    }
    expected.update({key: value for key, value in optional.items() if value is not None})
    return expected


def mismatches(
    rows: Sequence[Mapping[str, Any]], records: Sequence[LogRecord], limit: int = 10
) -> list[str]:
    """Returns how the rows (in record order) differ from the records' ground truth."""
    problems = []
    if len(rows) != len(records):
        problems.append(f"{len(rows)} rows for {len(records)} records")
    for index, (row, record) in enumerate(zip(rows, records, strict=False)):
        for column, wanted in expected_row(record).items():
            if row[column] != wanted:
                problems.append(
                    f"record {index} ({record.format.value} {record.event_type.value}) "
                    f"{column}: {row[column]!r:.120} != {wanted!r:.120}"
                )
        if len(problems) >= limit:
            break
    return problems


def rows_of_object(
    engine: Engine, source_sha256: str, name: str | None = None
) -> list[dict[str, Any]]:
    """Returns the logs rows of one raw object (of one bucket if named), in record order."""
    query = select(logs).where(logs.c.source_sha256 == source_sha256)
    if name is not None:
        query = query.where(logs.c.name == name)
    with engine.connect() as connection:
        result = connection.execute(query.order_by(logs.c.name, logs.c.record_no))
        return [dict(row._mapping) for row in result]


def all_rows(engine: Engine) -> list[dict[str, Any]]:
    """Returns every logs row, by object, bucket and record number."""
    with engine.connect() as connection:
        result = connection.execute(
            select(logs).order_by(logs.c.source_sha256, logs.c.name, logs.c.record_no)
        )
        return [dict(row._mapping) for row in result]
