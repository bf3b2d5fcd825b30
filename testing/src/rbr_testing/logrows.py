"""Rows for the `logs` table in tests and benchmarks: one by one, or a million at a time.

`log_row` builds one parsed record as the parser stores it. `generate_window` fills a bucket's
window on MariaDB server-side (INSERT ... SELECT over the Sequence engine's `seq_1_to_N`), with
a fixed variety of IPs, credentials, commands and URLs whatever the row count, so a digest's
growth with rows (rather than with distinct values) can be measured. Its rows come in objects
of `OBJECT_ROWS` records, each with one ingestion moment, as the parser writes them.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, text

from rbr_runtime.db.tables import logs

_record_numbers = itertools.count()
OBJECT_ROWS = 10_000
"""Records per generated object (one `source_sha256`, one `created_at`)."""
OBJECT_SPACING = 100
"""Seconds between the ingestion of generated objects (140 objects fill a 4-hour window)."""


def log_row(
    bucket: str,
    created_at: datetime,
    event_type: str,
    *,
    ip_address: str = "127.0.0.1",
    raw: str | None = None,
    source_sha256: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Returns one `logs` row: a parsed record of the bucket ingested at `created_at`."""
    record = raw if raw is not None else f"{event_type} {fields}"
    number = next(_record_numbers)
    return {
        "name": bucket,
        "ip_address": ip_address,
        "log": record,
        "log_size": len(record.encode()),
        "created_at": created_at,
        "log_format": fields.pop("log_format", "cowrie"),
        "event_type": event_type,
        "event_time": fields.pop("event_time", created_at),
        "source_key": f"raw/{bucket}/test.log",
        "source_sha256": source_sha256 or hashlib.sha256(f"{bucket}-{number}".encode()).hexdigest(),
        "record_no": number,
        **fields,
    }


def insert_rows(engine: Engine, rows: Sequence[dict[str, Any]]) -> None:
    """Inserts rows into `logs` (each row may set any subset of the optional columns)."""
    columns = {name for row in rows for name in row}
    complete = [{name: row.get(name) for name in columns} for row in rows]
    with engine.begin() as connection:
        connection.execute(insert(logs), complete)


@dataclass(frozen=True)
class Variety:
    """How many distinct values a generated window draws from."""

    source_ips: int = 2_000
    usernames: int = 300
    passwords: int = 1_000
    commands: int = 500
    urls: int = 200


def generate_window(
    engine: Engine, bucket: str, start: datetime, rows: int, variety: Variety | None = None
) -> None:
    """Inserts `rows` records for the bucket in the window starting at `start` (MariaDB only).

    Event types are the parser's normalised ones. Mix: 70% failed logins, 10% commands, 8% HTTP
    requests, 6% invalid users, 3% connects, 1% successful logins, 1% downloads, 1% unparsed.
    Event times spread over the window; each object's rows share one ingestion moment.
    """
    v = variety or Variety()
    statement = text(
        """
        INSERT INTO logs (name, ip_address, log, log_size, created_at, log_format, event_type,
            event_time, source_ip, source_port, username, password, command, url, file_sha256,
            session, message, source_key, source_sha256, record_no)
        SELECT :bucket, '192.0.2.10', CONCAT('{"eventid":"', kind, '","src_ip":"', ip,
                '","n":', seq, '}'),
            80, TIMESTAMPADD(SECOND, MOD(seq DIV :object_rows, 140) * :spacing, :start),
            'cowrie', kind, ts, ip, 40000 + MOD(seq, 20000),
            IF(kind LIKE 'login%' OR kind = 'invalid_user', CONCAT('user', MOD(seq, :users)), NULL),
            IF(kind LIKE 'login%' OR kind = 'invalid_user',
               CONCAT('pass', MOD(seq * 7, :passwords)), NULL),
            IF(kind = 'command',
               CONCAT('cat /proc/cpuinfo | grep name | head -n ',
                      MOD((seq DIV 100) * 10 + MOD(seq, 10), :commands)), NULL),
            CASE kind
                WHEN 'download'
                    THEN CONCAT('http://198.51.100.7/bins/x', MOD(seq DIV 100, :urls), '.sh')
                WHEN 'http_request' THEN CONCAT('/cgi-bin/probe', MOD(seq DIV 100, :urls), '.php')
                ELSE NULL END,
            IF(kind = 'download',
               SHA2(CONCAT('f', MOD(seq DIV 100, :urls)), 256), NULL),
            CONCAT('s', MOD(seq, 50000)), NULL, 'raw/bench.log',
            SHA2(CONCAT(:bucket, :start_text, seq DIV :object_rows), 256), MOD(seq, :object_rows)
        FROM (
            SELECT seq,
                CONCAT('10.', ((seq * 7919 MOD :ips) DIV 65536) MOD 256, '.',
                       ((seq * 7919 MOD :ips) DIV 256) MOD 256, '.', (seq * 7919 MOD :ips) MOD 256)
                    AS ip,
                TIMESTAMPADD(MICROSECOND, MOD(seq * 131, 14000000) * 1000, :start) AS ts,
                CASE
                    WHEN MOD(seq, 100) < 70 THEN 'login_failed'
                    WHEN MOD(seq, 100) < 80 THEN 'command'
                    WHEN MOD(seq, 100) < 88 THEN 'http_request'
                    WHEN MOD(seq, 100) < 94 THEN 'invalid_user'
                    WHEN MOD(seq, 100) < 97 THEN 'connect'
                    WHEN MOD(seq, 100) < 98 THEN 'login_success'
                    WHEN MOD(seq, 100) < 99 THEN 'download'
                    ELSE 'unparsed' END AS kind
            FROM seq_1_to_{rows}
        ) generated
        """.replace("{rows}", str(int(rows)))
    )
    with engine.begin() as connection:
        connection.execute(
            statement,
            {
                "bucket": bucket,
                "start": start.replace(tzinfo=None),
                "start_text": start.isoformat(),
                "ips": v.source_ips,
                "users": v.usernames,
                "passwords": v.passwords,
                "commands": v.commands,
                "urls": v.urls,
                "object_rows": OBJECT_ROWS,
                "spacing": OBJECT_SPACING,
            },
        )


def generated_objects(bucket: str, start: datetime, rows: int) -> list[str]:
    """Returns the `source_sha256` of every object `generate_window` made of `rows` rows."""
    last = rows // OBJECT_ROWS  # seq runs from 1 to rows
    return [
        hashlib.sha256(f"{bucket}{start.isoformat()}{number}".encode()).hexdigest()
        for number in range(last + 1)
    ]
