"""Analyst benchmark: digest size (estimated tokens) and build time for 10k, 100k, 1M rows.

Each window is generated server-side in a scratch MariaDB database (Sequence engine), with the
same variety of IPs, credentials, commands and URLs at every size, plus one million-row window
with fifty times the variety. Goal: under 30k tokens at 1M rows, growing with distinct values,
not rows. Needs the MariaDB server at 127.0.0.1:3306 (RBR_TEST_MARIADB_* to point elsewhere).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from bench.figures import Figure
from rbr_analyst.digest import DigestBuilder
from rbr_analyst.rules import analyse_with_rules
from rbr_analyst.windows import Window
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_testing.logrows import Variety, generate_window
from rbr_testing.mariadb import create_database, drop_database, mysql_url

START = datetime(2026, 11, 21, 8, tzinfo=UTC)
INTERVAL = 14_400
GOAL_TOKENS = 30_000
BASE = Variety()
HIGH = Variety(source_ips=100_000, usernames=15_000, passwords=50_000, commands=25_000, urls=10_000)


def _measure(engine: object, bucket: str, rows: int, variety: Variety) -> list[Figure]:
    started = time.monotonic()
    generate_window(engine, bucket, START, rows, variety)  # type: ignore[arg-type]
    inserted = time.monotonic() - started
    builder = DigestBuilder(engine)  # type: ignore[arg-type]
    started = time.monotonic()
    digest = builder.build(Window.starting(bucket, START, INTERVAL), "192.0.2.10")
    analyse_with_rules(digest)
    built = time.monotonic() - started
    tokens = digest.estimated_tokens()
    label = f"{rows // 1000}k rows" if rows < 1_000_000 else f"{rows // 1_000_000}M rows"
    label += "" if variety is BASE else " (50x variety)"
    return [
        Figure(
            f"analyst digest size, {label}",
            tokens,
            "tokens",
            goal=f"< {GOAL_TOKENS:,}",
            met=tokens < GOAL_TOKENS,
            note=f"{len(digest.render()):,} chars; {digest.source_ips.distinct:,} IPs, "
            f"{digest.commands.distinct:,} commands",
        ),
        Figure(
            f"analyst digest build time, {label}",
            built,
            "s",
            note=f"SQL aggregates + rules; generating the rows took {inserted:.1f}s",
        ),
    ]


def run(quick: bool) -> list[Figure]:
    """Measures digests of generated windows; quick: 10k and 100k rows only."""
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    name = create_database()
    try:
        url = mysql_url(name)
        upgrade(url)
        engine = make_engine(url)
        figures: list[Figure] = []
        for rows in sizes:
            figures += _measure(engine, f"bench-{rows}", rows, BASE)
        if not quick:
            figures += _measure(engine, "bench-high-variety", 1_000_000, HIGH)
        engine.dispose()
        return figures
    finally:
        drop_database(name)
