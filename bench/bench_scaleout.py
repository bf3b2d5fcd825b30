"""Scale-out model: replicas and sizing for fleets of 1,000 / 10,000 / 100,000 honeypots.

Every honeypot writes 100,000 log lines a day, is polled every 5 minutes and pulled every
15; each bucket's logs are analysed once per 4-hour window. The per-process rates are the
slowest figures measured on the development machine under load (docs/benchmarks.md), so the
replica counts are upper bounds; the bytes a row takes on disk are measured here, by loading
parsed simulator rows into a day-partitioned `logs` on MariaDB. Prints, per fleet size, the
work per second of each service, the replicas it needs at 50% headroom, and the storage.

    python -m bench scaleout [--quick]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text

from bench.bench_retention import _load_base
from bench.figures import Figure
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_testing.mariadb import create_database, drop_database, mysql_url

FLEETS = (1_000, 10_000, 100_000)
LINES_PER_HONEYPOT_DAY = 100_000
POLL_INTERVAL = 300
EXTRACT_INTERVAL = 900
WINDOWS_PER_DAY = 6
RETENTION_DAYS = 90
HEADROOM = 0.5
"""Each replica is planned at half its measured rate: bursts, restarts, catching up."""
DAY = 86_400


@dataclass(frozen=True)
class Measured:
    """The per-process figures the model uses (the slowest of the runs in benchmarks.md)."""

    poll_cpu_seconds: float = 0.00295
    """Poller CPU per poll (10,000-bucket cycle); a pull's call costs about as much."""
    parser_lines_per_second: float = 31_852
    """One parser replica (parse process + loader: two cores), worst of three runs."""
    database_load_lines_per_second: float = 80_887
    """The database alone taking encoded rows by LOAD DATA (this machine's MariaDB)."""
    notifier_per_second: float = 351
    pages_per_bucket_day: float = 2.6
    """Novelty-graded pages on the simulated fleet, its noisiest day."""
    raw_bytes_per_line: float = 202
    """Average `log_size` of the simulator's mix."""


def _row_bytes_on_disk(rows: int) -> float:
    """Returns data + index bytes per `logs` row, loaded as the parser loads them."""
    name = create_database()
    try:
        url = mysql_url(name)
        upgrade(url)
        engine = make_engine(url, local_infile=True)
        _load_base(engine, rows, datetime.now(UTC))
        with engine.begin() as connection:
            connection.execute(text("ANALYZE TABLE logs"))
            stored = connection.execute(
                text(
                    "SELECT SUM(data_length + index_length) FROM information_schema.partitions "
                    "WHERE table_schema = :schema AND table_name = 'logs'"
                ),
                {"schema": name},
            ).scalar_one()
            count = connection.execute(text("SELECT COUNT(*) FROM logs")).scalar_one()
        engine.dispose()
        return float(stored) / count
    finally:
        drop_database(name)


def replicas(work_per_second: float, capacity_per_second: float) -> int:
    """Returns the replicas that do the work at `HEADROOM` of their measured capacity."""
    return max(1, math.ceil(work_per_second / (capacity_per_second * HEADROOM)))


def fleet_figures(fleet: int, measured: Measured, row_bytes: float) -> list[Figure]:
    """Returns the model's figures for one fleet size."""
    lines = fleet * LINES_PER_HONEYPOT_DAY / DAY
    calls = fleet / POLL_INTERVAL + fleet / EXTRACT_INTERVAL
    call_capacity = 1 / measured.poll_cpu_seconds
    pages = fleet * measured.pages_per_bucket_day / DAY
    stored_per_day = fleet * LINES_PER_HONEYPOT_DAY * row_bytes
    prefix = f"{fleet:,} honeypots:"
    return [
        Figure(f"{prefix} lines/s into logs (average)", lines, "lines/s"),
        Figure(
            f"{prefix} parser replicas",
            replicas(lines, measured.parser_lines_per_second),
            "replicas",
        ),
        Figure(
            f"{prefix} database load, share of this machine's MariaDB",
            lines / measured.database_load_lines_per_second,
            "ratio",
            note="above 0.5: a larger database server first",
        ),
        Figure(f"{prefix} poll + pull calls/s", calls, "calls/s"),
        Figure(
            f"{prefix} poller + extractor replicas (call CPU)",
            replicas(calls, call_capacity),
            "replicas",
        ),
        Figure(f"{prefix} Claude analyses per hour", fleet * WINDOWS_PER_DAY / 24, "calls/h"),
        Figure(
            f"{prefix} notifier replicas",
            replicas(pages, measured.notifier_per_second),
            "replicas",
        ),
        Figure(f"{prefix} logs on disk per day", stored_per_day / 1e9, "GB/day"),
        Figure(
            f"{prefix} logs on disk at {RETENTION_DAYS} days' retention",
            stored_per_day * RETENTION_DAYS / 1e12,
            "TB",
        ),
        Figure(
            f"{prefix} raw objects in S3 per day",
            fleet * LINES_PER_HONEYPOT_DAY * measured.raw_bytes_per_line / 1e9,
            "GB/day",
        ),
    ]


def run(quick: bool) -> list[Figure]:
    """Measures a row's size on disk, then prints the model for each fleet size."""
    row_bytes = _row_bytes_on_disk(20_000 if quick else 100_000)
    figures = [Figure("logs: bytes per row on disk (data + indexes)", row_bytes, "bytes")]
    measured = Measured()
    for fleet in FLEETS:
        figures += fleet_figures(fleet, measured, row_bytes)
    return figures
