"""The notifier service: consumes `alerts`, delivers them, sends throttle digests.

Components: the consumer runner (group `notifier`), the digest sweeper, the retry sweeper
(deliveries waiting for their channel) and the daily cleanup of old alert history. Health on
port 9105: ready once the consumer joined its group and the database answers.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from rbr_notifier.channels import ChannelConfigError, ChannelsFile, load_channels
from rbr_notifier.closing import KeyedLocks
from rbr_notifier.dispatch import Dispatcher
from rbr_notifier.handlers import AlertHandler
from rbr_notifier.metrics import CHANNELS
from rbr_notifier.retry_sweeper import retry_task
from rbr_notifier.senders import Sender, build_sender
from rbr_notifier.senders.base import quiet_http_client_logs
from rbr_notifier.settings import NotifierSettings
from rbr_notifier.store import NotifierStore
from rbr_notifier.tasks import purge_history
from rbr_notifier.throttle_digest import DigestSweeper
from rbr_runtime.db.driver import speed_up_datetimes
from rbr_runtime.db.engine import make_engine
from rbr_runtime.dependencies import broker_dependency, database_dependency, watch_dependencies
from rbr_runtime.kafka import ConsumerRunner, EventProducer
from rbr_runtime.schedule import DailyTask, PeriodicTask, TaskClaims
from rbr_runtime.service import Service, bootstrap
from rbr_schemas import ALERTS, utcnow

log = logging.getLogger(__name__)
GROUP_ID = "notifier"
SOURCE = "/rbr/notifier"
DIGEST_WORKERS = 2
RETRY_WORKERS = 2
CLEANUP_TASK = "notifier_cleanup"


def build_senders(channels: ChannelsFile, settings: NotifierSettings) -> dict[str, Sender]:
    """Returns a sender per configured channel (enabled or not, for `rbr notify test`)."""
    return {c.name: build_sender(c, settings.notifier_timeout) for c in channels.channels}


def describe_channels(channels: ChannelsFile) -> None:
    """Logs which channels are configured (never their secrets) and sets the gauge."""
    for kind in ("email", "slack", "webhook", "pagerduty", "opsgenie"):
        CHANNELS.labels(kind).set(sum(1 for c in channels.enabled if c.type == kind))
    if not channels.enabled:
        log.warning(
            "no channels configured (RBR_NOTIFIER_CHANNELS): alerts are recorded in the "
            "alerts table but delivered nowhere"
        )
        return
    for channel in channels.enabled:
        log.info("channel %s (%s): %s", channel.name, channel.type, channel.target())


def cleanup_task(settings: NotifierSettings, store: NotifierStore) -> DailyTask:
    """Returns the daily purge of old alert history, at RBR_NOTIFIER_CLEANUP_AT in RBR_TIMEZONE."""
    return DailyTask(
        CLEANUP_TASK,
        settings.notifier_cleanup_at,
        lambda: purge_history(store, settings.notifier_retention_days),
        TaskClaims(store.engine),
        timezone=settings.timezone,
    )


def build_service(
    settings: NotifierSettings,
    *,
    channels: ChannelsFile | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Service:
    """Wires the notifier; nothing runs until `Service.run`.

    Raises:
        ChannelConfigError: the channels file is missing or invalid.
    """
    channels = channels if channels is not None else load_channels(settings.notifier_channels)
    quiet_http_client_logs()
    describe_channels(channels)
    service = Service(settings)
    # Every delivery thread, the digest threads, the consumer and the cleanup hold a
    # connection at times: size the pool so none of them waits for one.
    engine = make_engine(
        settings.database_url,
        pool_size=settings.notifier_concurrency + DIGEST_WORKERS + RETRY_WORKERS + 4,
    )
    speed_up_datetimes(engine)
    store = NotifierStore(engine)
    senders = build_senders(channels, settings)
    stop = threading.Event()
    pool = ThreadPoolExecutor(settings.notifier_concurrency, thread_name_prefix="deliver")
    digest_pool = ThreadPoolExecutor(DIGEST_WORKERS, thread_name_prefix="digest")
    # Retries have threads of their own: a channel coming back with hours of backlog must not
    # keep the consumer's deliveries waiting for a thread.
    retry_pool = ThreadPoolExecutor(RETRY_WORKERS, thread_name_prefix="retry")
    # The consumer's deliveries and the digest sweeper claim as one owner: they share locks.
    digest_locks = KeyedLocks()
    dispatcher = Dispatcher(
        store, channels, senders, settings, pool, stop=stop, clock=clock, digest_locks=digest_locks
    )
    handler = AlertHandler(store, dispatcher, channels, reopen_after=settings.notifier_reopen_after)
    producer = EventProducer(settings, source=SOURCE)
    runner = ConsumerRunner(
        settings, group_id=GROUP_ID, topics=[ALERTS], handler=handler, producer=producer
    )
    sweeper = DigestSweeper(
        store,
        channels,
        senders,
        settings,
        digest_pool,
        stop=stop,
        clock=clock,
        digest_locks=digest_locks,
    )
    digests = PeriodicTask("digests", settings.notifier_digest_interval, sweeper.run_once)
    retries = retry_task(
        store,
        channels,
        senders,
        settings,
        pool=retry_pool,
        producer=producer,
        group=GROUP_ID,
        stop=stop,
        clock=clock,
    )
    cleanup = cleanup_task(settings, store)

    def stop_consumer() -> None:
        stop.set()
        runner.stop()

    def stop_digests() -> None:
        stop.set()
        digests.stop()

    def stop_retries() -> None:
        stop.set()
        retries.stop()

    service.add("consumer", runner.run, stop_consumer)
    service.add("digests", digests.run, stop_digests)
    service.add("retries", retries.run, stop_retries)
    service.add("cleanup", cleanup.run, cleanup.stop)
    service.health.add_check("consumer", runner.readiness)
    watch_dependencies(service, database_dependency(settings), broker_dependency(settings))

    def release() -> None:
        producer.flush()
        pool.shutdown(wait=True, cancel_futures=True)
        digest_pool.shutdown(wait=True, cancel_futures=True)
        retry_pool.shutdown(wait=True, cancel_futures=True)
        for sender in senders.values():
            sender.close()
        engine.dispose()

    service.on_shutdown(release)
    return service


def main() -> None:
    """Runs the notifier until SIGTERM."""
    settings = bootstrap(NotifierSettings, "notifier")
    try:
        service = build_service(settings)
    except ChannelConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        sys.exit(2)
    sys.exit(service.run())
