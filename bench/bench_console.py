"""Console page render times: the fleet overview at 10,000 buckets and log search over 1M rows.

Each page is asked for over HTTP as a logged-in browser would (FastAPI's test client on the
whole registrar application, session cookie and all: routing, the session lookup, the operator
API's query, Jinja2 rendering), 30 times with varying filters; the figure is the 95th
percentile. 10,000 buckets (1,000 with --quick) in three states and three delivery modes;
1,000,000 log records (100,000 with --quick) of 200 buckets written server-side on MariaDB.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, text

from bench.figures import Figure
from rbr_registrar.main import Registrar
from rbr_registrar.settings import RegistrarSettings
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_runtime.db.tables import buckets
from rbr_testing.console import add_user, logged_in
from rbr_testing.logrows import generate_window
from rbr_testing.mariadb import create_database, drop_database, mysql_url

GOAL_MS = 300.0
RUNS = 30
LOG_BUCKETS = 200
START = datetime(2026, 10, 1, tzinfo=UTC)
STATES = ("active", "active", "active", "pending", "disabled")
MODES = ("pull", "pull", "agent", "s3-drop")


def _buckets(engine: Engine, count: int) -> None:
    now = datetime.now(UTC)
    rows = [
        {
            "id": f"00000000-0000-4000-8000-{number:012d}",
            "name": f"rustbucket-{number:06d}",
            "state": STATES[number % len(STATES)],
            "ip_address": f"10.{number // 65536 % 256}.{number // 256 % 256}.{number % 256}",
            "port": 8443,
            "operating_system": "Ubuntu 24.04 LTS",
            "token_hash": f"{number:064x}",
            "token_ciphertext": "not-a-real-token",
            "version": 1,
            "registered_at": now - timedelta(minutes=number),
            "updated_at": now,
            "last_seen": now - timedelta(seconds=number % 600),
            "last_reachable": number % 17 != 0,
            "delivery_mode": MODES[number % len(MODES)],
        }
        for number in range(count)
    ]
    with engine.begin() as connection:
        for first in range(0, count, 2000):
            connection.execute(insert(buckets), rows[first : first + 2000])


def _logs(engine: Engine, count: int) -> None:
    per_bucket = count // LOG_BUCKETS
    for number in range(LOG_BUCKETS):
        start = START + timedelta(hours=4 * (number % 180))
        generate_window(engine, f"rustbucket-{number:06d}", start, per_bucket)


def _timed(
    client: TestClient, make: Callable[[random.Random], dict[str, Any]], path: str
) -> tuple[float, float]:
    """Returns the p95 and the median of RUNS page loads, in ms (after one untimed load)."""
    pick = random.Random(5)
    client.get(path, params=make(pick))  # compiles the template and the statements once
    timings = []
    for _ in range(RUNS):
        params = make(pick)
        started = time.perf_counter()
        answer = client.get(path, params=params)
        timings.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, params, answer.text[:300])
    return statistics.quantiles(timings, n=20)[-1], statistics.median(timings)


def _day(pick: random.Random) -> dict[str, str]:
    since = START + timedelta(hours=4 * pick.randrange(180))
    return {
        "since": f"{since:%Y-%m-%dT%H:%M}",
        "until": f"{since + timedelta(days=1):%Y-%m-%dT%H:%M}",
    }


def _bucket(pick: random.Random) -> str:
    return f"rustbucket-{pick.randrange(LOG_BUCKETS):06d}"


FLEET: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "first page": lambda pick: {},
    "pending only": lambda pick: {"state": "pending"},
    "agent buckets": lambda pick: {"mode": "agent"},
    "name prefix": lambda pick: {"prefix": f"rustbucket-00{pick.randrange(100):02d}"},
    "a page deep in the list": lambda pick: {"after": f"rustbucket-{pick.randrange(9000):06d}"},
}
LOGS: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "newest records": lambda pick: {},
    "one bucket": lambda pick: {"bucket": _bucket(pick)},
    "one bucket, one day": lambda pick: {"bucket": _bucket(pick), **_day(pick)},
    "event type": lambda pick: {"event_type": pick.choice(["login_failed", "download"])},
    "source address": lambda pick: {"source_ip": f"10.0.{pick.randrange(4)}.{pick.randrange(256)}"},
    "username": lambda pick: {"username": f"user{pick.randrange(50)}"},
    "command text, one bucket": lambda pick: {"bucket": _bucket(pick), "command": "head -n 3"},
    "free text, one day": lambda pick: {"text": "login_success", **_day(pick)},
}


def _client(url: str) -> tuple[Registrar, threading.Thread, TestClient]:
    settings = RegistrarSettings(
        database_url=url,
        secret_key="bench-secret",
        operator_key="bench-operator-key",
        kafka_bootstrap="127.0.0.1:1",
        log_format="text",
    )
    registrar = Registrar(settings)
    thread = threading.Thread(target=registrar.committer.run, daemon=True)
    thread.start()
    client = TestClient(registrar.app, follow_redirects=False)
    return registrar, thread, client


def run(quick: bool) -> list[Figure]:
    bucket_count = 1_000 if quick else 10_000
    log_count = 100_000 if quick else 1_000_000
    database = create_database()
    url = mysql_url(database)
    upgrade(url)
    engine = make_engine(url)
    registrar, thread, client = _client(url)
    try:
        started = time.monotonic()
        _buckets(engine, bucket_count)
        _logs(engine, log_count)
        # Statistics as InnoDB keeps them for a table that grew over time (after a bulk load
        # they lag until its background update; the plans would be a freshly loaded table's).
        with engine.begin() as connection:
            connection.execute(text("ANALYZE TABLE buckets, logs"))
        print(
            f"   ({bucket_count:,} buckets, {log_count:,} log rows in "
            f"{time.monotonic() - started:.0f}s)",
            flush=True,
        )
        add_user(engine, "bench", "viewer")
        logged_in(client, "bench")
        pages = [
            (f"console fleet p95, {name}, {bucket_count:,} buckets", "/console/", make)
            for name, make in FLEET.items()
        ] + [
            (f"console log search p95, {name}, {log_count:,} rows", "/console/logs", make)
            for name, make in LOGS.items()
        ]
        figures = []
        for title, path, make in pages:
            p95, median = _timed(client, make, path)
            figures.append(
                Figure(
                    title,
                    p95,
                    "ms",
                    goal=f"< {GOAL_MS:.0f} ms",
                    met=p95 < GOAL_MS,
                    note=f"median {median:.0f} ms",
                )
            )
        return figures
    finally:
        client.close()
        registrar.committer.stop()
        thread.join(10)
        registrar.engine.dispose()
        engine.dispose()
        drop_database(database)
