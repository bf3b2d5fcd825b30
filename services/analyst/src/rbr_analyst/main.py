"""The analyst service: backlog consumer, analysis cycle, outbox relay, daily summary."""

from __future__ import annotations

import logging
import sys

from sqlalchemy import Engine

from rbr_analyst.analyst import Analyst
from rbr_analyst.claude import ClaudeAnalyser
from rbr_analyst.handlers import make_parsed_handler
from rbr_analyst.intel_store import prune_intel
from rbr_analyst.settings import AnalystSettings
from rbr_analyst.store import OUTBOX, AnalystStore
from rbr_analyst.summary import describe, send_daily_summary
from rbr_runtime.db.engine import make_engine
from rbr_runtime.dependencies import broker_dependency, database_dependency, watch_dependencies
from rbr_runtime.kafka import ConsumerRunner, EventProducer
from rbr_runtime.schedule import DailyTask, PeriodicTask, TaskClaims
from rbr_runtime.service import Service, bootstrap
from rbr_schemas import LOGS_PARSED, utcnow

log = logging.getLogger(__name__)

GROUP_ID = "analyst"
SOURCE = "/rbr/analyst"


def build_analyst(settings: AnalystSettings, engine: Engine, producer: EventProducer) -> Analyst:
    """Returns the analyst: Claude when an API key is configured, the rules otherwise."""
    claude = ClaudeAnalyser(settings) if settings.uses_claude else None
    if claude is None:
        log.warning("ANTHROPIC_API_KEY is not set: windows are analysed by the rules alone")
    return Analyst(settings, AnalystStore(engine), producer, claude)


def summary_task(settings: AnalystSettings, engine: Engine, producer: EventProducer) -> DailyTask:
    """Returns the daily summary: one per local day, at start-up only when a day was missed."""
    return DailyTask.for_slots(
        "daily_summary",
        settings.daily_summary_at,
        lambda slot: describe(send_daily_summary(engine, producer, slot, utcnow())),
        TaskClaims(engine),
        timezone=settings.timezone,
    )


def retention_task(settings: AnalystSettings, engine: Engine) -> DailyTask:
    """Returns the daily IOC retention run (claimed by one replica, at the summary's time)."""
    return DailyTask.for_slots(
        "ioc_retention",
        settings.daily_summary_at,
        lambda _slot: prune_intel(engine, utcnow(), settings.ioc_retention_days).line(),
        TaskClaims(engine),
        timezone=settings.timezone,
    )


def build_service(settings: AnalystSettings) -> Service:
    """Wires the service's components; nothing runs until `run()`."""
    service = Service(settings)
    engine = make_engine(settings.database_url)
    producer = EventProducer(settings, source=SOURCE)
    store = AnalystStore(engine)
    analyst = build_analyst(settings, engine, producer)
    runner = ConsumerRunner(
        settings,
        group_id=GROUP_ID,
        topics=[LOGS_PARSED],
        handler=make_parsed_handler(store, settings.analysis_interval),
        producer=producer,
    )
    cycle = PeriodicTask("analyze_logs", settings.analysis_check_interval, analyst.run_cycle)
    daily = summary_task(settings, engine, producer)
    service.add("consumer", runner.run, runner.stop)
    service.add("analysis", cycle.run, cycle.stop)
    service.add("daily-summary", daily.run, daily.stop)
    retention = retention_task(settings, engine)
    service.add("ioc-retention", retention.run, retention.stop)
    # The cycle publishes its events itself; the relay retries what a broker outage left,
    # and with several replicas only the one holding the relay lock publishes.
    service.add("outbox-relay", analyst.relay.run, analyst.relay.stop)
    gauges = OUTBOX.gauges(engine, settings.dependency_check_interval)
    service.add("outbox-gauges", gauges.run, gauges.stop)
    service.health.add_check("consumer", runner.readiness)
    watch_dependencies(service, database_dependency(settings), broker_dependency(settings))
    service.on_shutdown(producer.flush)
    service.on_shutdown(engine.dispose)
    return service


def main() -> None:
    """Runs the analyst until SIGTERM."""
    settings = bootstrap(AnalystSettings, "analyst")
    sys.exit(build_service(settings).run())
