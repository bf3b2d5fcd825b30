"""The poll loop: each owned bucket once per slot at its own phase, claimed across replicas.

Slots and phases are `rbr_runtime.schedule.FleetSlots` (no catch-up); a slot is claimed in
`poller_state` before the poll. Polls run concurrently on an asyncio loop of their own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime

import httpx
from prometheus_client import Counter, Gauge

from rbr_poller.pending import PendingResults
from rbr_poller.polling import PollConfig, poll_bucket
from rbr_poller.recorder import UNRESPONSIVE, Recorder
from rbr_poller.settings import PollerSettings
from rbr_poller.store import PollerStateStore
from rbr_runtime.buckets import BucketClients, client_options
from rbr_runtime.kafka import BucketDirectory
from rbr_runtime.retry import backoff_delay
from rbr_runtime.schedule import FleetSlots
from rbr_schemas import BucketRegistered, BucketState, utcnow

log = logging.getLogger(__name__)

STATUS_NAMESPACE = uuid.UUID("9d3c7c9e-8f0f-4e0b-a7b4-2d6f0f4f5a21")
CLAIMS_LOST = Counter(
    "rbr_poll_claims_lost_total", "Due polls another replica had already claimed for the slot."
)
FLUSH_SPACING = 0.25
"""Shortest time between two recordings of poll results. Each is a transaction, a produce
and a health check whatever its size: recording as each poll ends made batches of a few
results, and their fixed cost most of a poll's CPU time."""
KEEP_ALIVE_INTERVAL = 5.0
"""Longest poll interval over which a connection is kept (httpx keeps idle ones 5 s)."""
IN_FLIGHT = Gauge("rbr_polls_in_flight", "Polls in progress.")
PENDING_STATUSES = Gauge(
    "rbr_statuses_unpublished", "Polled statuses waiting to be published (broker or DB down)."
)


def status_event_id(name: str, slot: int) -> str:
    """Returns the id of a bucket's status event for a slot: the same if it is re-sent."""
    return str(uuid.uuid5(STATUS_NAMESPACE, f"{name}:{slot}"))


def due_buckets(
    records: list[BucketRegistered],
    now: datetime,
    *,
    interval: float,
    jitter: float,
    done: dict[str, int],
    busy: set[str],
) -> tuple[int, list[BucketRegistered]]:
    """Returns the current slot and the buckets due in it that are not done nor in progress.

    Polls use `FleetSlots` without catch-up: a slot missed while no poller ran is not made up.
    """
    slots = FleetSlots(interval, jitter)
    due = {
        name for name, _ in slots.due([r.name for r in records if r.name not in busy], now, done)
    }
    return slots.current(now), [record for record in records if record.name in due]


class PollLoop:
    """Polls the buckets this replica owns: a component with `run` and `stop`."""

    def __init__(
        self,
        settings: PollerSettings,
        directory: BucketDirectory,
        store: PollerStateStore,
        recorder: Recorder,
        config: PollConfig,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._directory = directory
        self._store = store
        self._recorder = recorder
        self._config = config
        self._clock = clock
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._limiter: asyncio.Semaphore | None = None
        self._done: dict[str, int] = {}
        self._known: dict[str, str] = {}
        """Buckets whose state row is known to exist: name -> bucket id."""
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._results = PendingResults(settings.max_unpublished_statuses)
        self._flush_failures = 0
        self._next_flush = 0.0
        """When results may be recorded next: spaced by FLUSH_SPACING, or a backoff."""
        self._next_sweep = 0.0
        self._reschedule = True
        """The owned buckets may have changed: look at the schedule at the next step."""
        self._next_schedule = 0.0
        self.polls_done = 0
        # Each bucket is called once per poll interval (minutes), long after a kept-alive
        # connection to it would have expired: connections are not kept.
        options = client_options(
            config.access, keep_alive=settings.poll_interval <= KEEP_ALIVE_INTERVAL
        )
        self._clients = BucketClients(
            config.access, lambda verify: httpx.AsyncClient(verify=verify, **options)
        )

    # -- component -----------------------------------------------------------------------------

    def run(self) -> None:
        """Polls until stop()."""
        asyncio.run(self._main())

    def stop(self) -> None:
        """Stops scheduling; polls in flight finish and are recorded."""
        self._stop.set()
        self.wake()

    def wake(self) -> None:
        """Re-examines the schedule now (the owned buckets may have changed)."""
        self._reschedule = True
        loop, event = self._loop, self._wake
        if loop is None or event is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed in between: nothing to wake
            loop.call_soon_threadsafe(event.set)

    @property
    def in_flight(self) -> int:
        """Returns how many polls are in progress."""
        return len(self._tasks)

    @property
    def tick(self) -> float:
        """Returns the longest pause between two looks at the schedule."""
        return max(0.05, min(1.0, self._settings.poll_interval / 20))

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._limiter = asyncio.Semaphore(self._config.access.bucket_concurrency)
        try:
            while not self._stop.is_set():
                await self._step(self._clients.current())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._pause())
                self._wake.clear()
            await self._drain()
        finally:
            for client in self._clients.made():
                await client.aclose()

    def _pause(self) -> float:
        """Returns how long to wait for a wake-up: a tick, or until results may be recorded."""
        if not self._results:
            return self.tick
        return min(self.tick, max(0.01, self._next_flush - time.monotonic()))

    async def _drain(self) -> None:
        if self._tasks:
            log.info("waiting for %d poll(s) in flight", len(self._tasks))
            await asyncio.wait(self._tasks, timeout=self._settings.bucket_timeout + 1)
        await self._flush(force=True)

    # -- one step --------------------------------------------------------------------------------

    async def _step(self, default: httpx.AsyncClient | None) -> None:
        await self._flush()
        if not self._directory.caught_up:
            return
        # A finished poll wakes the loop to record its result; the whole fleet is looked at
        # again only each tick or when the owned buckets changed (it is O(fleet) each time).
        if not self._reschedule and time.monotonic() < self._next_schedule:
            return
        self._reschedule = False
        self._next_schedule = time.monotonic() + self.tick
        now = self._clock()
        records = self._directory.buckets(BucketState.ACTIVE)
        # Without a usable CA bundle only buckets with a pinned certificate can be called.
        callable_now = [r for r in records if default is not None or r.tls_cert_sha256]
        try:
            if callable_now:
                await self._schedule(default, callable_now, now)
            await self._sweep(records, now)
        except Exception:
            log.exception("poll scheduling failed; retrying at the next tick")

    async def _schedule(
        self, default: httpx.AsyncClient | None, records: list[BucketRegistered], now: datetime
    ) -> None:
        new = {r.name: r.bucket_id for r in records if self._known.get(r.name) != r.bucket_id}
        if new:
            await asyncio.to_thread(self._store.ensure, new, now)
            self._known |= new
        slot, due = due_buckets(
            [r for r in records if r.delivery_mode.polled],
            now,
            interval=self._settings.poll_interval,
            jitter=self._settings.poll_jitter,
            done=self._done,
            busy=self._busy,
        )
        if not due:
            return
        claimed = set(await asyncio.to_thread(self._store.claim, [r.name for r in due], slot, now))
        for record in due:
            self._done[record.name] = slot
            if record.name not in claimed:
                CLAIMS_LOST.inc()
                continue
            pin = record.tls_cert_sha256
            client = self._clients.pinned(pin) if pin is not None else default
            assert client is not None  # records were filtered by _step
            self._start(client, record, slot)

    def _start(self, client: httpx.AsyncClient, record: BucketRegistered, slot: int) -> None:
        self._busy.add(record.name)
        IN_FLIGHT.inc()
        task = asyncio.create_task(self._poll(client, record, slot), name=record.name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _poll(self, client: httpx.AsyncClient, record: BucketRegistered, slot: int) -> None:
        try:
            status = await poll_bucket(client, record, self._config, self._limiter)
            self._results.add((status, status_event_id(record.name, slot)))
            self.polls_done += 1
        finally:
            self._busy.discard(record.name)
            IN_FLIGHT.dec()
            if self._wake is not None:
                self._wake.set()

    async def _flush(self, *, force: bool = False) -> None:
        if not self._results or (not force and time.monotonic() < self._next_flush):
            return
        batch = self._results.take()
        self._next_flush = time.monotonic() + FLUSH_SPACING
        try:
            await asyncio.to_thread(self._recorder.record, batch)
        except Exception as error:  # noqa: BLE001 - broker or DB down: keep and retry
            self._results.put_back(batch)
            self._flush_failures += 1
            delay = backoff_delay(
                self._flush_failures,
                self._settings.retry_initial_backoff,
                self._settings.retry_max_backoff,
            )
            self._next_flush = time.monotonic() + delay
            log.warning(
                "cannot record %d poll result(s) yet (%s: %s); retrying in %.1fs",
                len(self._results),
                type(error).__name__,
                str(error)[:300],
                delay,
            )
        else:
            self._flush_failures = 0
            await self._check_polled([status.name for status, _ in batch])
        PENDING_STATUSES.set(len(self._results))

    async def _check_polled(self, names: list[str]) -> None:
        """Fires or resolves the alerts of buckets just polled (the sweep retries failures)."""
        try:
            await asyncio.to_thread(self._recorder.check_health, names, self._clock())
        except Exception as error:  # noqa: BLE001 - the next sweep decides again from state
            log.warning("health check after polls failed: %s: %s", type(error).__name__, error)

    async def _sweep(self, records: list[BucketRegistered], now: datetime) -> None:
        if time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + self._settings.health_check_interval
        active = [r.name for r in records if r.delivery_mode.polled]
        uploading = [r.name for r in records if not r.delivery_mode.polled]
        inactive = [
            r.name for r in self._directory.buckets(state=None) if r.state != BucketState.ACTIVE
        ]
        owned = {r.name for r in records}
        self._done = {name: slot for name, slot in self._done.items() if name in owned}
        self._known = {name: key for name, key in self._known.items() if name in owned}
        summary = await asyncio.to_thread(
            self._recorder.check_health, active, now, inactive, uploading
        )
        UNRESPONSIVE.set(summary.open)
