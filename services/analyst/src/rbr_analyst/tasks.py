"""`rbr run-task analyze_logs`, `daily_summary` and `ioc_retention`: one run, by hand."""

from __future__ import annotations

from rbr_analyst.analyst import CycleSummary
from rbr_analyst.intel_store import prune_intel
from rbr_analyst.main import SOURCE, build_analyst
from rbr_analyst.settings import AnalystSettings
from rbr_analyst.summary import describe, send_summary_now
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
