"""The registrar process: HTTP API, group committer, outbox relay, reseeder, consumers."""

from __future__ import annotations

import logging
import sys
import threading
from datetime import timedelta
from functools import partial

from sqlalchemy import Engine

from rbr_registrar.api import Dependencies, Surface, create_app
from rbr_registrar.committer import GroupCommitter
from rbr_registrar.console.app import build_console
from rbr_registrar.expiry import PendingExpiry
from rbr_registrar.handlers import apply_discoveries, apply_statuses
from rbr_registrar.merges import BucketMerges
from rbr_registrar.reseed import RegistryReseeder
from rbr_registrar.server import HttpServer
from rbr_registrar.settings import RegistrarSettings
from rbr_registrar.sources import DropSources
from rbr_registrar.store import OUTBOX, BucketRepository
from rbr_runtime.db.driver import speed_up_datetimes
from rbr_runtime.db.engine import is_mysql, make_engine
from rbr_runtime.dependencies import broker_dependency, database_dependency, watch_dependencies
from rbr_runtime.kafka import ConsumerRunner, EventProducer
from rbr_runtime.outbox import OutboxRelay
from rbr_runtime.schedule import PeriodicTask, TaskClaims
from rbr_runtime.secrets import TokenVault
from rbr_runtime.service import Service, bootstrap
from rbr_schemas import BUCKET_STATUS, DROP_DISCOVERED, utcnow

log = logging.getLogger(__name__)

SOURCE = "/rbr/registrar"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
HISTORY_PURGE_INTERVAL = 3600.0
"""Seconds between purges of the status history (idempotent: every replica may run it)."""


class CommitterThread:
    """Runs the group committer beside the HTTP server, started before it, stopped after."""

    def __init__(self, committer: GroupCommitter) -> None:
        self._committer = committer
        self._thread = threading.Thread(target=committer.run, name="group-committer", daemon=True)

    def start(self) -> None:
        """Starts committing."""
        self._thread.start()

    def stop(self) -> None:
        """Commits what is queued and waits for the thread."""
        self._committer.stop()
        self._thread.join(30)


class Registrar:
    """The wired parts of a registrar, for tests that need to reach inside."""

    def __init__(self, settings: RegistrarSettings) -> None:
        self.settings = settings
        self.service = Service(settings, serve_health=False)
        self.engine = make_engine(settings.database_url, pool_size=10, max_overflow=10)
        speed_up_datetimes(self.engine)
        self.repository = BucketRepository(self.engine, settings.replacement_silence)
        self.producer = EventProducer(settings, source=SOURCE)
        self.relay = OutboxRelay(
            self.engine,
            OUTBOX,
            partial(EventProducer, settings, SOURCE),
            batch_size=settings.outbox_batch_size,
            scan_interval=settings.outbox_scan_interval,
            initial_backoff=settings.retry_initial_backoff,
            max_backoff=settings.retry_max_backoff,
            # Late-bound: the reseeder is built next, from the relay's role.
            on_recovered=lambda: self.reseeder.trigger(),  # noqa: PLW0108
        )
        self.reseeder = RegistryReseeder(
            settings,
            self.repository,
            leading=self.relay.leading,
            on_queued=self.relay.wake,
            interval=settings.reseed_interval,
            initial_backoff=settings.retry_initial_backoff,
            max_backoff=settings.retry_max_backoff,
        )
        self.commit_engine = _commit_engine(settings, self.engine)
        self.committer = GroupCommitter(
            BucketRepository(self.commit_engine, settings.replacement_silence),
            max_batch=settings.registration_batch_max,
            # SQLite takes one writer at a time: more would only wait on its lock.
            writers=settings.registration_writers if is_mysql(self.engine) else 1,
            on_commit=self.relay.wake,
        )
        committer_thread = CommitterThread(self.committer)
        vault = TokenVault.from_setting(settings.secret_key.get_secret_value())
        self.sources = DropSources(self.repository, vault)
        merges = BucketMerges(self.repository)
        deps = Dependencies(
            settings=settings,
            repository=self.repository,
            committer=self.committer,
            vault=vault,
            health=self.service.health,
            sources=self.sources,
            merges=merges,
            on_commit=self.relay.wake,
            reseeder=self.reseeder,
            console=build_console(settings, self.repository, merges, self.relay.wake),
        )
        # With a console port, the main port faces the honeypots (registration only) and the
        # console and operator API are served on their own listener, for an internal network.
        split = settings.console_port is not None
        _warn_if_cookies_may_go_in_clear(settings)
        self.app = create_app(deps, Surface.PUBLIC if split else Surface.ALL)
        self.console_app = create_app(deps, Surface.INTERNAL) if split else None
        self.pending_expiry = PendingExpiry(
            self.repository,
            TaskClaims(self.engine),
            expiry=settings.pending_expiry,
            interval=settings.pending_expiry_interval,
            on_commit=self.relay.wake,
        )
        self.http = HttpServer(
            self.app,
            settings.http_host,
            settings.http_port,
            access_log=settings.access_log,
            graceful_timeout=settings.shutdown_timeout,
            before=committer_thread.start,
            after=committer_thread.stop,
        )
        self.status_consumer = ConsumerRunner(
            settings,
            group_id="registrar",
            topics=[BUCKET_STATUS],
            handler=partial(apply_statuses, self.repository),
            producer=self.producer,
        )
        # Its own group: drop reports are few and must not wait behind a status backlog.
        self.drop_consumer = ConsumerRunner(
            settings,
            group_id="registrar-drops",
            topics=[DROP_DISCOVERED],
            handler=partial(apply_discoveries, self.sources, self.relay.wake),
            producer=self.producer,
        )
        service = self.service
        service.add("outbox-relay", self.relay.run, self.relay.stop)
        service.add("registry-reseeder", self.reseeder.run, self.reseeder.stop)
        service.add("status-consumer", self.status_consumer.run, self.status_consumer.stop)
        service.add("drop-consumer", self.drop_consumer.run, self.drop_consumer.stop)
        service.add("http", self.http.run, self.http.stop)
        self.console_http: HttpServer | None = None
        if self.console_app is not None and settings.console_port is not None:
            self.console_http = HttpServer(
                self.console_app,
                settings.console_host,
                settings.console_port,
                access_log=settings.access_log,
                graceful_timeout=settings.shutdown_timeout,
            )
            service.add("console-http", self.console_http.run, self.console_http.stop)
            service.health.add_check("console-http", self.console_http.readiness)
        if settings.pending_expiry:
            expiry = PeriodicTask(
                "pending-expiry", settings.pending_expiry_interval, self.pending_expiry.run_once
            )
            service.add("pending-expiry", expiry.run, expiry.stop)
        if settings.status_history_retention:
            purge = PeriodicTask("status-history-purge", HISTORY_PURGE_INTERVAL, self.purge_history)
            service.add("status-history-purge", purge.run, purge.stop)
        service.health.add_check("http", self.http.readiness)
        gauges = OUTBOX.gauges(self.engine, settings.dependency_check_interval)
        service.add("outbox-gauges", gauges.run, gauges.stop)
        # The outbox keeps acknowledged registrations while the broker is away: an outage of
        # the broker shows as degraded, without taking the API out of the load balancer.
        watch_dependencies(
            service, database_dependency(settings), broker_dependency(settings, required=False)
        )
        service.on_shutdown(self.producer.flush)
        service.on_shutdown(self.engine.dispose)
        if self.commit_engine is not self.engine:
            service.on_shutdown(self.commit_engine.dispose)

    def purge_history(self) -> int:
        """Deletes poll outcomes older than the retention; returns how many."""
        cutoff = utcnow() - timedelta(seconds=self.settings.status_history_retention)
        return self.repository.purge_status_history(cutoff)


def _commit_engine(settings: RegistrarSettings, engine: Engine) -> Engine:
    """Returns the group committer's engine: on MySQL its own, with no round trip but its work.

    A batch's transaction is a few round trips, and two more were the pool's: a ping at
    checkout and a ROLLBACK at checkin. Its transactions always end in a commit or a
    rollback, so there is nothing to reset; a connection the server dropped fails the batch
    with an outage, which `with_retries` runs again on a new connection (SQLAlchemy discards
    the pool's connections on a disconnect). SQLite keeps the one engine: one writer at a
    time, on a local file.
    """
    if not is_mysql(engine):
        return engine
    writers = settings.registration_writers
    committing = make_engine(
        settings.database_url,
        pool_size=writers,
        max_overflow=writers,
        pool_pre_ping=False,
        pool_reset_on_return=None,
    )
    speed_up_datetimes(committing)
    return committing


def build_service(settings: RegistrarSettings) -> Service:
    """Wires the registrar; nothing runs until `run()`."""
    return Registrar(settings).service


def main() -> None:
    """Runs the registrar until SIGTERM."""
    settings = bootstrap(RegistrarSettings, "registrar")
    sys.exit(build_service(settings).run())


def _warn_if_cookies_may_go_in_clear(settings: RegistrarSettings) -> None:
    """Warns when the console listens beyond loopback and its cookie may lack Secure.

    Behind a proxy that terminates TLS every request looks like plain HTTP here, so the
    session cookie goes out without Secure unless RBR_CONSOLE_SECURE_COOKIE says otherwise.
    """
    host = settings.console_host if settings.console_port is not None else settings.http_host
    if settings.console_secure_cookie or host in LOOPBACK_HOSTS:
        return
    log.warning(
        "the console listens on %s without RBR_CONSOLE_SECURE_COOKIE: behind a TLS proxy "
        "its session cookie is sent without Secure; set RBR_CONSOLE_SECURE_COOKIE=true",
        host,
    )
