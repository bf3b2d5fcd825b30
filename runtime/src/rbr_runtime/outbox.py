"""The transactional outbox: messages committed with their change, published afterwards.

A service writes the messages announcing a change into the `outbox` table in the change's
own transaction (`Outbox.add`); its `OutboxRelay` publishes them in id order and deletes them
once the broker confirmed them. So a change is announced if and only if it was committed,
however long the broker is away. Each service has its own rows (`service`), relay, relay
lock and metrics (labelled `service`). The runtime README's "Outbox" section tells more.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from prometheus_client import Counter, Gauge
from sqlalchemy import Engine, delete, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from rbr_runtime.db.backlog import BacklogGauges
from rbr_runtime.db.bulk import insert_rows
from rbr_runtime.db.engine import is_mysql, is_transient_db_error
from rbr_runtime.db.tables import outbox as outbox_table
from rbr_runtime.errors import describe_error
from rbr_runtime.kafka import DeliveryError, EventProducer, OutgoingMessage
from rbr_runtime.kafka.codec import CONTENT_TYPE, CONTENT_TYPE_HEADER
from rbr_runtime.retry import Backoff
from rbr_schemas import utcnow

log = logging.getLogger(__name__)

OUTBOX_BACKLOG = Gauge(
    "rbr_outbox_backlog", "Outbox messages waiting to be published.", ["service"]
)
OUTBOX_OLDEST_SECONDS = Gauge(
    "rbr_outbox_oldest_seconds", "Age of the oldest outbox message waiting.", ["service"]
)
OUTBOX_PUBLISHED = Counter(
    "rbr_outbox_published_total",
    "Outbox messages the broker confirmed (and that were deleted).",
    ["service"],
)
OUTBOX_FAILURES = Counter(
    "rbr_outbox_failures_total",
    "Relay attempts that failed (broker or database down).",
    ["service", "cause"],
)
RELAY_LEADER = Gauge(
    "rbr_outbox_relay_leader", "1 while this replica relays the service's outbox.", ["service"]
)
LOCK_PREFIX = "rbr_outbox_relay:"


@dataclass(frozen=True)
class OutboxMessage:
    """A message to publish after the commit.

    Attributes:
        topic: the topic's name.
        key: the message key (messages of one key are published in the order written).
        value: the encoded event; None is a tombstone.
    """

    topic: str
    key: str
    value: bytes | None


@dataclass(frozen=True)
class Outbox:
    """One service's share of the `outbox` table."""

    service: str

    def add(self, connection: Connection, messages: Sequence[OutboxMessage], now: datetime) -> None:
        """Queues messages in the caller's transaction: they are published once it commits.

        A writer that locks the row of what it announces before adding its messages gets ids
        in commit order for that row, so the relay publishes them in that order.
        """
        if not messages:
            return
        insert_rows(
            connection,
            outbox_table,
            [
                {
                    "service": self.service,
                    "topic": message.topic,
                    "message_key": message.key,
                    "value": message.value,
                    "created_at": now,
                }
                for message in messages
            ],
        )

    def waiting_keys(
        self, connection: Connection, topic: str, keys: Sequence[str] | None = None
    ) -> set[str]:
        """Returns the keys (of `keys`, or all) with messages to `topic` waiting to be sent."""
        query = (
            select(outbox_table.c.message_key)
            .distinct()
            .where(outbox_table.c.service == self.service, outbox_table.c.topic == topic)
        )
        if keys is not None:
            query = query.where(outbox_table.c.message_key.in_(keys))
        return set(connection.execute(query).scalars())

    def gauges(self, engine: Engine, interval: float) -> BacklogGauges:
        """Returns `rbr_outbox_backlog` and `rbr_outbox_oldest_seconds`, a component.

        They are read from the table on a timer of their own, so they keep rising while the
        relay is blocked in a send to a broker that does not answer.
        """
        return BacklogGauges(
            engine,
            outbox_table,
            rows=OUTBOX_BACKLOG.labels(self.service),
            oldest_seconds=OUTBOX_OLDEST_SECONDS.labels(self.service),
            interval=interval,
            where=outbox_table.c.service == self.service,
        )


class Leadership(Protocol):
    """Decides which replica relays a service's outbox."""

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
    server releases it and another replica takes over at its next scan. Not thread-safe: the
    relay calls it under its own lock.
    """

    def __init__(self, engine: Engine, service: str) -> None:
        self._engine = engine
        self._service = service
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
            self._name = lock_name(self._service, str(database or ""))
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
            RELAY_LEADER.labels(self._service).set(0)
            return False
        self._connection = connection
        RELAY_LEADER.labels(self._service).set(1)
        log.info("this replica now relays the %s outbox (lock %s)", self._service, name)
        return True

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            RELAY_LEADER.labels(self._service).set(0)
            log.warning("%s outbox relay lock lost; trying to take it again", self._service)
            connection.invalidate()
            connection.close()

    def release(self) -> None:
        """Releases the lock and closes its connection."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        RELAY_LEADER.labels(self._service).set(0)
        try:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": self._name})
            connection.rollback()
        except DBAPIError:
            log.info("could not release the relay lock; the server frees it with the connection")
        connection.close()


def lock_name(service: str, database: str) -> str:
    """Returns the relay lock's name: server-wide, so one per service and database.

    MySQL allows 64 characters; a longer database name is replaced by a hash of it.
    """
    name = f"{LOCK_PREFIX}{service}:{database}"
    if len(name) > 64:
        name = f"{LOCK_PREFIX}{service}:{hashlib.sha256(database.encode()).hexdigest()}"
    return name[:64]


def leadership_for(engine: Engine, service: str) -> Leadership:
    """Returns the relay election that fits the database."""
    return MysqlNamedLock(engine, service) if is_mysql(engine) else SingleProcess()


class OutboxRelay:
    """Publishes one service's outbox: a component with `run` and `stop`.

    `run` relays for as long as the service runs: woken by `wake()` after a commit, scanning
    every `scan_interval` otherwise, retrying broker and database outages with growing pauses
    (never skipping a message). `publish_pending()` publishes what waits at once, for a
    caller that just committed (with or without `run`). Passes never overlap in one process.
    """

    def __init__(
        self,
        engine: Engine,
        outbox: Outbox,
        producer_factory: Callable[[], EventProducer],
        *,
        leadership: Leadership | None = None,
        batch_size: int = 500,
        scan_interval: float = 2.0,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        coalesce: float = 0.05,
        on_recovered: Callable[[], None] = lambda: None,
    ) -> None:
        """Prepares the relay; nothing is read or sent before `run` or `publish_pending`.

        Args:
            engine: the database holding the outbox.
            outbox: whose messages to publish.
            producer_factory: makes the producer (again after a fatal producer error).
            leadership: who relays among replicas (default: `leadership_for(engine, ...)`).
            batch_size: most messages per pass.
            scan_interval: seconds between passes without a wake-up.
            initial_backoff: first pause after a failed pass.
            max_backoff: longest pause after failed passes.
            coalesce: seconds a wake-up waits for more commits to join its pass.
            on_recovered: called when a pass succeeds after failures (the broker is back).
        """
        self._engine = engine
        self.outbox = outbox
        self._producer_factory = producer_factory
        self._producer: EventProducer | None = None
        self._leadership = leadership or leadership_for(engine, outbox.service)
        self._batch_size = batch_size
        self._scan_interval = scan_interval
        self._backoff = Backoff(initial_backoff, max_backoff)
        self._coalesce = coalesce
        self._on_recovered = on_recovered
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._passing = threading.Lock()
        self._running = False
        self.failing_since: datetime | None = None
        """When the failing passes in a row began; None while passes succeed."""
        self.leading = threading.Event()
        """Set while this replica holds the relay role (as of its latest pass)."""

    def wake(self) -> None:
        """Asks for a relay pass now (called after every commit that wrote the outbox)."""
        self._wake.set()

    def stop(self) -> None:
        """Stops after the pass in progress."""
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        """Relays until stop(); broker and database outages are retried, never skipped."""
        self._running = True
        try:
            while not self._stop.is_set():
                self._wake.clear()
                published = self._pass()
                if published is None:
                    self._stop.wait(self._backoff.failed())
                    continue
                self._backoff.succeeded()
                if published < self._batch_size:
                    self._wake.wait(self._scan_interval)
                    # Let the commits of the next few milliseconds join this pass: under load
                    # one pass per commit would compete with the commits themselves.
                    self._stop.wait(self._coalesce)
        finally:
            with self._passing:
                self._running = False
                self._give_up_role()
            if self._producer is not None:
                self._producer.flush(5.0)

    def publish_pending(self) -> int:
        """Publishes every message waiting now; returns how many.

        Returns 0 when another replica relays (it publishes them) and stops at a broker or
        database failure (logged and counted; `run` retries it). Without `run`, the relay
        role is given back afterwards, so a one-off caller holds no lock when it is done.
        """
        published = 0
        while (sent := self._pass()) is not None:
            published += sent
            if sent < self._batch_size:
                break
        with self._passing:
            if not self._running:
                self._give_up_role()
        return published

    def relay_once(self) -> int:
        """Publishes up to one batch of messages; returns how many were published.

        Raises:
            DeliveryError: the broker did not confirm them (they stay in the outbox).
            DBAPIError: the database failed.
        """
        with self._passing:
            if not self._leadership.held():
                self.leading.clear()
                return 0
            self.leading.set()
            return self._publish_batch()

    def _publish_batch(self) -> int:
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(
                    outbox_table.c.id,
                    outbox_table.c.topic,
                    outbox_table.c.message_key,
                    outbox_table.c.value,
                )
                .where(outbox_table.c.service == self.outbox.service)
                .order_by(outbox_table.c.id)
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
            connection.execute(delete(outbox_table).where(outbox_table.c.id.in_(ids)))
        OUTBOX_PUBLISHED.labels(self.outbox.service).inc(len(ids))
        return len(ids)

    def _pass(self) -> int | None:
        """Runs one relay pass; returns messages published, or None when it failed."""
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
            log.info(
                "%s outbox relay recovered",
                self.outbox.service,
                extra={"failing_since": self.failing_since},
            )
            self.failing_since = None
            # The broker may have come back without its topics' content (a restarted
            # memory-only broker, a cluster restored from backup): let the service check.
            self._on_recovered()
        return published

    def _failed(self, cause: str, error: Exception) -> None:
        OUTBOX_FAILURES.labels(self.outbox.service, cause).inc()
        if self.failing_since is None:
            self.failing_since = utcnow()
        log.warning(
            "%s outbox relay cannot publish (%s down?): %s; retrying",
            self.outbox.service,
            cause,
            describe_error(error),
        )

    def _give_up_role(self) -> None:
        self.leading.clear()
        self._leadership.release()

    def _get_producer(self) -> EventProducer:
        if self._producer is None:
            self._producer = self._producer_factory()
        return self._producer
