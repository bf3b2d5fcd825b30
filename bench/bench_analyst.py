"""Analyst benchmark: digest size (estimated tokens) and build time for 10k, 100k, 1M rows.

Each window is generated server-side in a scratch MariaDB database (Sequence engine), with the
same variety of IPs, credentials, commands and URLs at every size, plus one million-row window
with fifty times the variety. Its objects are folded into the window's tallies as the
`logs.parsed` handler does; the digest is then built from the tallies (goal: <= 2 s at 1M rows)
and, for comparison, from the rows as before (the two must be equal). Size goal: under 30k
tokens at 1M rows. Needs the MariaDB server at 127.0.0.1:3306 (RBR_TEST_MARIADB_* to point
elsewhere).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy import Engine

from bench.figures import Figure
from rbr_analyst.rules import analyse_with_rules
from rbr_analyst.store import AnalystStore
from rbr_analyst.window_digest import Digest, DigestBuilder
from rbr_analyst.windows import Window
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_testing.logrows import Variety, generate_window, generated_objects
from rbr_testing.mariadb import create_database, drop_database, mysql_url

START = datetime(2026, 11, 21, 8, tzinfo=UTC)
INTERVAL = 14_400
GOAL_TOKENS = 30_000
GOAL_SECONDS = 2.0
BASE = Variety()
HIGH = Variety(source_ips=100_000, usernames=15_000, passwords=50_000, commands=25_000, urls=10_000)


def _timed_build(builder: DigestBuilder, window: Window) -> tuple[Digest, float]:
    started = time.monotonic()
    digest = builder.build(window, "192.0.2.10")
    analyse_with_rules(digest)
    return digest, time.monotonic() - started


def _measure(engine: Engine, bucket: str, rows: int, variety: Variety) -> list[Figure]:
    started = time.monotonic()
    generate_window(engine, bucket, START, rows, variety)
    inserted = time.monotonic() - started
    store = AnalystStore(engine)
    started = time.monotonic()
    for sha256 in generated_objects(bucket, START, rows):
        store.fold_object(bucket, sha256, INTERVAL)
    folded = time.monotonic() - started
    window = Window.starting(bucket, START, INTERVAL)
    digest, built = _timed_build(DigestBuilder(engine), window)
    from_rows, scanned = _timed_build(DigestBuilder(engine, use_tallies=False), window)
    same = digest.as_json() == from_rows.as_json() and digest.read_from == "tallies"
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
            goal=f"<= {GOAL_SECONDS:.0f} s at 1M rows" if rows >= 1_000_000 else "",
            met=built <= GOAL_SECONDS if rows >= 1_000_000 else None,
            note=f"from the window's tallies, rules included; "
            f"{'same digest as' if same else 'DIFFERS from'} the rows' {scanned:.1f} s",
        ),
        Figure(
            f"analyst tallies: folding {label} as parsed",
            rows / folded,
            "rows/s",
            note=f"{folded:.1f} s over {len(generated_objects(bucket, START, rows))} objects, "
            f"in the logs.parsed handler; generating the rows took {inserted:.1f} s",
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
