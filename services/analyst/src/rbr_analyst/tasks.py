"""`rbr run-task analyze_logs|analyze_now|daily_summary|ioc_retention`: one run, by hand."""

from __future__ import annotations

from rbr_analyst.analyst import CycleSummary, WindowAnalysis
from rbr_analyst.intel_store import prune_intel
from rbr_analyst.main import SOURCE, build_analyst
from rbr_analyst.settings import AnalystSettings
from rbr_analyst.summary import describe, send_summary_now
from rbr_analyst.windows import Window
from rbr_runtime.db.engine import make_engine
from rbr_runtime.kafka import EventProducer
from rbr_runtime.settings import load_settings
from rbr_schemas import utcnow


def analyze_logs() -> str:
    """Analyses every backlog window that has ended; returns what was done."""
    settings = load_settings(AnalystSettings)
    engine = make_engine(settings.database_url)
    producer = EventProducer(settings, source=SOURCE)
    try:
        analyst = build_analyst(settings, engine, producer)
        total = CycleSummary()
        # One cycle takes each bucket's oldest due window; go on until none is left.
        while True:
            cycle = analyst.run_cycle()
            total.add(cycle)
            if cycle.analysed + cycle.skipped == 0 or cycle.failed:
                break
        return total.line()
    finally:
        producer.flush()
        engine.dispose()


def analyze_now() -> str:
    """Prints each bucket's current window analysed as it stands; stores and alerts nothing.

    The scheduled analysis waits for a window to end (RBR_ANALYSIS_INTERVAL, 4 h by default,
    plus RBR_ANALYSIS_GRACE): this shows at once what it would say so far.
    """
    settings = load_settings(AnalystSettings)
    engine = make_engine(settings.database_url)
    producer = EventProducer(settings, source=SOURCE)
    try:
        previews = build_analyst(settings, engine, producer).preview(utcnow())
    finally:
        engine.dispose()
    for window, analysis in previews:
        print("\n".join(preview_lines(window, analysis)))
    return f"{len(previews)} window(s) previewed; nothing stored, no alert sent"


def preview_lines(window: Window, analysis: WindowAnalysis) -> list[str]:
    """Returns what `analyze_now` prints for one window (model text is already cleaned)."""
    result = analysis.result
    lines = [
        f"{window.bucket} (window from {window.start:%Y-%m-%d %H:%M} UTC, so far): "
        f"{result.severity.value} by {analysis.analyser}",
        f"  {result.summary}",
    ]
    lines += [f"  - [{f.severity.value}] {f.title}" for f in result.findings]
    return lines


def ioc_retention() -> str:
    """Deletes indicators not sighted for RBR_IOC_RETENTION_DAYS, now; returns what went."""
    settings = load_settings(AnalystSettings)
    engine = make_engine(settings.database_url)
    try:
        return prune_intel(engine, utcnow(), settings.ioc_retention_days).line()
    finally:
        engine.dispose()


def daily_summary() -> str:
    """Publishes a summary of the last 24 hours now; returns its headline figures.

    It is a summary of its own (its own alert id), delivered even when the day's scheduled
    summary went out already; it does not take that summary's place.
    """
    settings = load_settings(AnalystSettings)
    engine = make_engine(settings.database_url)
    producer = EventProducer(settings, source=SOURCE)
    try:
        return describe(send_summary_now(engine, producer, utcnow(), settings.timezone))
    finally:
        producer.flush()
        engine.dispose()
