"""Threat intelligence: pages per bucket per day before/after novelty grading, IOC upsert
rate into MariaDB, and streamed export time and memory for many indicators.

Pages: a simulated fleet of 20 buckets sharing one attacker population (as `make demo` runs
it, botnets hitting every honeypot) is written window by window into a scratch MariaDB
database and analysed by the rules, once with `RBR_ALERT_GRADING=kind` (every finding alerts
at its kind's severity: before issue 15) and once with `novelty` (the default). A page is what the
notifier would deliver to a channel filtered `min_severity: high` (or to any channel, since
routine findings are graded low and not published): the first firing of a dedupe key at high
or critical while no occurrence of it is open (see `notified`).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, text

from bench.figures import Figure
from rbr_analyst.analyst import Analyst
from rbr_analyst.enrich import shared_database
from rbr_analyst.indicators import Sighting
from rbr_analyst.intel_store import CampaignPolicy, record_intel
from rbr_analyst.settings import AnalystSettings
from rbr_analyst.store import AnalystStore
from rbr_analyst.windows import Window
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_runtime.db.tables import outbox
from rbr_runtime.intel.export import ExportFormat, ExportQuery, export
from rbr_runtime.intel.indicators import Indicator, IndicatorType
from rbr_runtime.kafka import EventProducer
from rbr_runtime.settings import CommonSettings
from rbr_simulator.attackers import public_ips
from rbr_simulator.generator import LogGenerator
from rbr_testing.logrows import insert_rows, log_row
from rbr_testing.mariadb import create_database, drop_database, mysql_url

INTERVAL = 14_400
START = datetime(2026, 11, 1, tzinfo=UTC)
BUCKETS = 20
EXPORT_NOW = datetime(2026, 11, 3, tzinfo=UTC)


def _fleet_rows(windows: int, per_window: int) -> list[dict[str, Any]]:
    rng = random.Random(15)
    attackers = public_ips(rng, 256)
    rows: list[dict[str, Any]] = []
    for b in range(BUCKETS):
        name = f"rustbucket-sim{b:05d}"
        gen = LogGenerator(seed=b, sensor=name, start=START, attacker_ips=attackers)
        for w in range(windows):
            at = START + timedelta(seconds=w * INTERVAL + 60)
            for record in gen.generate(per_window):
                rows.append(
                    log_row(
                        name,
                        at,
                        record.event_type.value,
                        source_ip=record.src_ip,
                        username=record.username,
                        password=record.password,
                        command=record.command,
                        url=record.url if record.event_type.value == "download" else None,
                        file_sha256=record.sha256,
                    )
                )
    return rows


def _pages(engine: Engine, grading: str, windows: int) -> tuple[list[datetime], int]:
    settings = AnalystSettings(
        database_url=engine.url.render_as_string(hide_password=False),
        analysis_grace=0,
        alert_grading=grading,
        anthropic_api_key=None,
    )
    store = AnalystStore(engine)
    producer = EventProducer(CommonSettings(kafka_bootstrap="127.0.0.1:9"), source="/bench")
    now = START + timedelta(seconds=(windows + 2) * INTERVAL)
    analyst = Analyst(settings, store, producer, None, clock=lambda: now, geo=shared_database())
    analyst.relay.publish_pending = lambda: 0  # type: ignore[method-assign] - events counted below
    for b in range(BUCKETS):
        starts = [START + timedelta(seconds=w * INTERVAL) for w in range(windows)]
        store.note_windows(f"rustbucket-sim{b:05d}", "192.0.2.1", starts, INTERVAL, now)
    while store.pending_count():
        analyst.run_cycle()
    with engine.connect() as connection:
        values = connection.execute(
            select(outbox.c.value).where(outbox.c.topic == "alerts").order_by(outbox.c.id)
        ).scalars()
        alerts = [json.loads(value)["data"] for value in values]
    return notified(alerts), len(alerts)


def notified(alerts: list[dict[str, Any]], reopen_after: float = 86_400) -> list[datetime]:
    """Counts the pages the notifier would send a channel filtered `min_severity: high`.

    As the notifier does: a firing event opens an occurrence of its dedupe key and notifies,
    unless one is open (a repeat), or the open one has not fired for RBR_NOTIFIER_REOPEN_AFTER
    (superseded: notifies again); a resolved event closes it.
    """
    last_fired: dict[str, datetime] = {}
    pages: list[datetime] = []
    for alert in alerts:
        key = alert["dedupe_key"]
        when = datetime.fromisoformat(alert["occurred_at"])
        if alert["state"] == "resolved":
            last_fired.pop(key, None)
            continue
        previous = last_fired.get(key)
        fresh = previous is None or (when - previous).total_seconds() > reopen_after
        if fresh and alert["severity"] in ("high", "critical"):
            pages.append(when)
        last_fired[key] = when
    return pages


def _scratch() -> tuple[str, Engine]:
    name = create_database()
    url = mysql_url(name)
    upgrade(url)
    return name, make_engine(url)


def _measure_pages(quick: bool) -> list[Figure]:
    windows = 6 if quick else 12
    rows = _fleet_rows(windows, 100 if quick else 300)
    per_window = len(rows) // (BUCKETS * windows)
    figures = []
    for grading in ("kind", "novelty"):
        name, engine = _scratch()
        try:
            insert_rows(engine, rows)
            pages, events = _pages(engine, grading, windows)
        finally:
            engine.dispose()
            drop_database(name)
        first_day = START + timedelta(days=1, seconds=INTERVAL)  # window ends of day 1
        for label, chosen in (
            ("day 1", [p for p in pages if p <= first_day]),
            ("day 2", [p for p in pages if p > first_day]),
        ):
            figures.append(
                Figure(
                    f"pages per bucket per day, grading={grading}, {label}",
                    len(chosen) / BUCKETS,
                    "pages",
                    note=f"{len(chosen)} pages; {events} alert events in all; {BUCKETS} "
                    f"buckets, 4 h windows, {per_window} records each",
                )
            )
    return figures


def _sightings(n: int, offset: int) -> list[Sighting]:
    found = []
    for i in range(n):
        value = f"{(offset + i) * 2654435761 % 2**256:064x}"
        found.append(
            Sighting(
                Indicator(IndicatorType.SHA256, value),
                hits=1,
                roles=["download"],
                techniques=["T1105"],
                confidence=90,
                source_rule="download",
            )
        )
    return found


def _measure_upserts(engine: Engine, total: int) -> Figure:
    policy = CampaignPolicy(window=INTERVAL, min_buckets=3, quiet=86_400)
    batch = 100
    started = time.perf_counter()
    for k in range(total // batch):
        window = Window.starting(
            f"rustbucket-{k % BUCKETS}", START + timedelta(hours=4 * (k // BUCKETS)), INTERVAL
        )
        # Half new indicators, half seen before: the mix of a fleet that has been running.
        sightings = _sightings(batch // 2, k * batch) + _sightings(batch // 2, 0)
        with engine.begin() as connection:
            record_intel(
                connection,
                window,
                analysis_id=k,
                sightings=sightings,
                techniques={},
                geo=None,
                campaigns=policy,
                now=window.end,
            )
    elapsed = time.perf_counter() - started
    return Figure(
        "IOC upserts into MariaDB (batches of 100)",
        total / elapsed,
        "ioc/s",
        note=f"{total} sightings in {elapsed:.1f} s, half of them new indicators",
    )


def _fill(engine: Engine, count: int) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO iocs (ioc_type, value, key_sha256, first_seen, last_seen, sightings, "
                "hits, bucket_count, buckets, techniques, roles, confidence, source, source_rule, "
                "attributes, updated_at) "
                "SELECT 'ip', "
                "CONCAT('45.', (seq >> 16) & 255, '.', (seq >> 8) & 255, '.', seq & 255), "
                "SHA2(CONCAT('ip:', seq), 256), '2026-11-01', '2026-11-02', 3, 9, 2, "
                '\'["rustbucket-a", "rustbucket-b"]\', \'["T1110", "T1078"]\', \'["login"]\', 70, '
                f"'rules', 'login', '{{}}', '2026-11-02' FROM seq_1_to_{count}"
            )
        )


def _measure_export(url: str, kind: ExportFormat, limit: int) -> Figure:
    """Runs one export in a child process (its own peak RSS), to /dev/null."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "bench.bench_intel", url, kind.value, str(limit)],
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - started
    size, chunks, base_mb, peak_mb = result.stdout.split()
    return Figure(
        f"export {kind.value}",
        elapsed,
        "s",
        note=f"{int(size) / 1e6:.0f} MB streamed in {chunks} chunks; process RSS "
        f"{float(base_mb):.0f} MB before, {float(peak_mb):.0f} MB peak",
    )


def _export_child(url: str, kind: str, limit: int) -> None:
    """The child of `_measure_export`: prints bytes, chunks, RSS before and peak RSS (MB)."""
    engine = make_engine(url)
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    base = _memory_mb("VmRSS")
    size = count = 0
    for chunk in export(engine, ExportFormat(kind), ExportQuery(), EXPORT_NOW):
        size += len(chunk)
        count += 1
        if limit and size > limit:
            break
    print(size, count, base, _memory_mb("VmHWM"))


def _memory_mb(field: str) -> float:
    """Reads this process's resident memory (VmRSS) or its peak (VmHWM) in MB.

    Not ru_maxrss: Linux keeps that across execve, so a child would report its parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(quick: bool) -> list[Figure]:
    figures = _measure_pages(quick)
    name, engine = _scratch()
    try:
        figures.append(_measure_upserts(engine, 2_000 if quick else 20_000))
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM iocs"))
        total = 100_000 if quick else 1_000_000
        _fill(engine, total)
        url = engine.url.render_as_string(hide_password=False)
        for kind in (ExportFormat.BLOCKLIST, ExportFormat.CSV, ExportFormat.MISP):
            figure = _measure_export(url, kind, 0)
            figures.append(
                Figure(
                    f"{figure.name} of {total:,} indicators",
                    figure.value,
                    figure.unit,
                    note=figure.note,
                )
            )
        stix = _measure_export(url, ExportFormat.STIX, 50_000_000)
        figures.append(
            Figure("export stix, first 50 MB of the bundle", stix.value, stix.unit, note=stix.note)
        )
    finally:
        engine.dispose()
        drop_database(name)
    return figures


if __name__ == "__main__":
    _export_child(sys.argv[1], sys.argv[2], int(sys.argv[3]))
