"""The outbox relay: publishes `registrar_outbox` rows to Kafka in order, then deletes them.

A registration is acknowledged once its bucket row and its outbox row are committed together;
the relay makes sure the event reaches the topic afterwards, however long the broker is away:

* rows are sent in id order, and deleted only after the broker confirmed every one of them;
  a failure leaves them in place and the relay retries with growing pauses;
* a commit wakes the relay at once (commits of the next 50 ms join the same pass); it also
  scans every `RBR_OUTBOX_SCAN_INTERVAL` seconds, so rows written by another replica or left
  by a crash go out too;
* with several registrar replicas only the one holding a MySQL named lock relays, so the
  events of one bucket can never overtake each other (SQLite: one process, always the relay);
* `rbr_outbox_backlog` and `rbr_outbox_oldest_seconds` are read from the table on a timer of
  their own (`outbox_gauges`), so they keep rising while the relay is blocked in a send.

A crash between the broker's confirmation and the delete re-sends those rows: events carry
deterministic ids and versions, so consumers recognise the duplicates.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from prometheus_client import Counter, Gauge
from sqlalchemy import Engine, delete, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from rbr_runtime.db.backlog import BacklogGauges
from rbr_runtime.db.engine import is_mysql, is_transient_db_error
from rbr_runtime.db.tables import registrar_outbox
from rbr_runtime.kafka import DeliveryError, EventProducer, OutgoingMessage
from rbr_runtime.kafka.codec import CONTENT_TYPE, CONTENT_TYPE_HEADER
from rbr_runtime.kafka.consumer import backoff_delay
from rbr_schemas import utcnow

log = logging.getLogger(__name__)

OUTBOX_BACKLOG = Gauge("rbr_outbox_backlog", "Outbox rows waiting to be published.")
OUTBOX_OLDEST_SECONDS = Gauge(
    "rbr_outbox_oldest_seconds", "Age of the oldest outbox row waiting to be published."
)
OUTBOX_PUBLISHED = Counter(
    "rbr_outbox_published_total", "Outbox rows the broker confirmed (and that were deleted)."
)
OUTBOX_FAILURES = Counter(
    "rbr_outbox_failures_total", "Relay attempts that failed (broker or database down).", ["cause"]
)
RELAY_LEADER = Gauge("rbr_outbox_relay_leader", "1 when this replica is the one relaying.")
LOCK_PREFIX = "rbr_outbox_relay:"


class Leadership(Protocol):
    """Decides which replica relays."""

    def held(self) -> bool:
        """Returns whether this replica relays now (acquiring the role if it is free)."""
        ...

    def release(self) -> None:
        """Gives the role up."""
        ...


class SingleProcess:
    """SQLite: one process owns the database file, so it always relays."""

    def held(self) -> bool:
        """Always True."""
        return True

    def release(self) -> None:
        """Nothing to release."""


class MysqlNamedLock:
    """The relay role is a MySQL `GET_LOCK` held by a dedicated connection.

    The lock belongs to the connection: when the process dies or the connection drops, the
    server releases it and another replica takes over at its next scan.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None
        self._name: str | None = None

    def held(self) -> bool:
        """Checks the lock is still ours, or tries to take it (without waiting)."""
        if self._connection is not None and self._still_ours(self._connection):
            return True
        self._drop()
        return self._acquire()

    def _lock_name(self, connection: Connection) -> str:
        if self._name is None:
            database = connection.execute(text("SELECT DATABASE()")).scalar_one_or_none()
            # Lock names are server-wide: one lock per database, at most 64 characters.
            self._name = (LOCK_PREFIX + str(database or ""))[:64]
        return self._name

    def _still_ours(self, connection: Connection) -> bool:
        try:
            ours = connection.execute(
                text("SELECT IS_USED_LOCK(:name) = CONNECTION_ID()"),
                {"name": self._name},
            ).scalar()
            connection.rollback()
        except DBAPIError:
            return False
        return bool(ours)

    def _acquire(self) -> bool:
        connection = self._engine.connect()
        try:
            name = self._lock_name(connection)
            acquired = connection.execute(
                text("SELECT GET_LOCK(:name, 0)"), {"name": name}
            ).scalar()
            connection.rollback()
        except DBAPIError:
            connection.close()
            raise
        if acquired != 1:
            connection.close()
            RELAY_LEADER.set(0)
            return False
        self._connection = connection
        RELAY_LEADER.set(1)
        log.info("this replica now relays the outbox (lock %s)", name)
        return True

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            RELAY_LEADER.set(0)
            log.warning("outbox relay lock lost; trying to take it again")
            connection.invalidate()
            connection.close()

    def release(self) -> None:
        """Releases the lock and closes its connection."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        RELAY_LEADER.set(0)
        try:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": self._name})
            connection.rollback()
        except DBAPIError:
            log.info("could not release the relay lock; the server frees it with the connection")
        connection.close()


def leadership_for(engine: Engine) -> Leadership:
    """Returns the relay election that fits the database."""
    return MysqlNamedLock(engine) if is_mysql(engine) else SingleProcess()


class OutboxRelay:
    """Publishes the outbox: a component with `run` and `stop`."""

    def __init__(
        self,
        engine: Engine,
        producer_factory: Callable[[], EventProducer],
        leadership: Leadership,
        *,
        batch_size: int = 500,
        scan_interval: float = 2.0,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        coalesce: float = 0.05,
        on_recovered: Callable[[], None] = lambda: None,
    ) -> None:
        self._engine = engine
        self._producer_factory = producer_factory
        self._producer: EventProducer | None = None
        self._leadership = leadership
        self._batch_size = batch_size
        self._scan_interval = scan_interval
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._coalesce = coalesce
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.failing_since: datetime | None = None
        self.leading = threading.Event()
        """Set while this replica holds the relay role (as of its latest pass)."""
        self._on_recovered = on_recovered

    def wake(self) -> None:
        """Asks for a relay pass now (called after every commit that wrote the outbox)."""
        self._wake.set()

    def stop(self) -> None:
        """Stops after the pass in progress."""
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        """Relays until stop(); broker and database outages are retried, never skipped."""
        failures = 0
        try:
            while not self._stop.is_set():
                self._wake.clear()
                outcome = self._pass()
                if outcome is None:
                    failures += 1
                    pause = backoff_delay(failures, self._initial_backoff, self._max_backoff)
                    self._stop.wait(pause)
                    continue
                failures = 0
                if outcome < self._batch_size:
                    self._wake.wait(self._scan_interval)
                    # Let the commits of the next few milliseconds join this pass: under load
                    # one pass per commit would compete with the commits themselves.
                    self._stop.wait(self._coalesce)
        finally:
            self.leading.clear()
            self._leadership.release()
            if self._producer is not None:
                self._producer.flush(5.0)

    def _pass(self) -> int | None:
        """Runs one relay pass; returns rows published, or None when it failed."""
        try:
            published = self.relay_once()
        except DeliveryError as error:
            self._failed("broker", error)
            # A producer that hit a fatal error (e.g. the broker lost its state) never
            # recovers: start over with a new one.
            self._producer = None
            return None
        except DBAPIError as error:
            if not is_transient_db_error(error):
                raise
            self._failed("database", error)
            return None
        if self.failing_since is not None:
            log.info("outbox relay recovered", extra={"failing_since": self.failing_since})
            self.failing_since = None
            # The broker may have come back without its topics' content (a restarted
            # memory-only broker, a cluster restored from backup): have it checked.
            self._on_recovered()
        return published

    def _failed(self, cause: str, error: Exception) -> None:
        OUTBOX_FAILURES.labels(cause).inc()
        if self.failing_since is None:
            self.failing_since = utcnow()
        log.warning(
            "outbox relay cannot publish (%s down?): %s: %s; retrying",
            cause,
            type(error).__name__,
            str(error)[:300],
        )

    def relay_once(self) -> int:
        """Publishes up to one batch of outbox rows; returns how many were published.

        Raises:
            DeliveryError: the broker did not confirm them (they stay in the outbox).
            DBAPIError: the database failed.
        """
        if not self._leadership.held():
            self.leading.clear()
            return 0
        self.leading.set()
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(
                    registrar_outbox.c.id,
                    registrar_outbox.c.topic,
                    registrar_outbox.c.message_key,
                    registrar_outbox.c.value,
                )
                .order_by(registrar_outbox.c.id)
                .limit(self._batch_size)
            ).all()
        if not rows:
            return 0
        messages = [
            OutgoingMessage(
                row.topic,
                row.message_key,
                row.value,
                [(CONTENT_TYPE_HEADER, CONTENT_TYPE)] if row.value is not None else [],
            )
            for row in rows
        ]
        self._get_producer().send_messages(messages)
        ids = [row.id for row in rows]
        with self._engine.begin() as connection:
            connection.execute(delete(registrar_outbox).where(registrar_outbox.c.id.in_(ids)))
        OUTBOX_PUBLISHED.inc(len(ids))
        return len(ids)

    def _get_producer(self) -> EventProducer:
        if self._producer is None:
            self._producer = self._producer_factory()
        return self._producer


def outbox_gauges(engine: Engine, interval: float) -> BacklogGauges:
    """Returns the measurement of the outbox's backlog, a component of its own."""
    return BacklogGauges(
        engine,
        registrar_outbox,
        rows=OUTBOX_BACKLOG,
        oldest_seconds=OUTBOX_OLDEST_SECONDS,
        interval=interval,
    )
