"""Tasks `rbr run-task` runs by hand."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from rbr_log_extractor.extractor import Extractor
from rbr_log_extractor.main import make_extractor
from rbr_log_extractor.memory import release_large_buffers
from rbr_log_extractor.outcome import ExtractionError, Outcome
from rbr_log_extractor.scheduler import lease_for
from rbr_log_extractor.settings import ExtractorSettings
from rbr_log_extractor.store import ExtractState
from rbr_runtime.db.engine import make_engine
from rbr_runtime.jsonlog import log_context
from rbr_runtime.kafka.directory import read_registrations
from rbr_runtime.schedule import slot_of, worker_identity
from rbr_runtime.settings import load_settings
from rbr_schemas import BucketRegistered, BucketState, utcnow

log = logging.getLogger(__name__)


def extract_logs() -> str:
    """Extracts every active bucket's logs now, whatever their schedule.

    Buckets another process is extracting at this moment are skipped (their lease says so).
    """
    settings = load_settings(ExtractorSettings)
    release_large_buffers()
    engine = make_engine(settings.database_url)
    state = ExtractState(engine, f"{worker_identity()}:run-task")
    extractor, _ = make_extractor(settings, state)
    try:
        buckets = [r for r in read_registrations(settings) if r.state is BucketState.ACTIVE]
        with ThreadPoolExecutor(settings.extract_concurrency) as pool:
            results = list(pool.map(lambda r: _extract(settings, state, extractor, r), buckets))
    finally:
        extractor.close()
        engine.dispose()
    stored = [r for r in results if isinstance(r, Outcome)]
    failed = results.count("failed")
    busy = results.count("busy")
    return (
        f"{len(buckets)} active buckets: {sum(o.objects for o in stored)} objects "
        f"({sum(o.bytes for o in stored)} bytes) stored, {failed} failed, {busy} busy elsewhere"
    )


def _extract(
    settings: ExtractorSettings, state: ExtractState, extractor: Extractor, record: BucketRegistered
) -> Outcome | str:
    slot = slot_of(utcnow(), settings.extract_interval)
    with log_context(bucket=record.name):
        if not state.take_lease(record.name, slot, lease_for(settings)):
            log.info("another process is extracting %s; skipped", record.name)
            return "busy"
        try:
            return extractor.extract(record)
        except ExtractionError:
            return "failed"
        finally:
            state.release(record.name)
