"""Group commit: concurrent registrations share one transaction, each acknowledged after it.

Under load, committing each registration alone makes the database's log flush the limit.
Requests instead queue here; a writer thread takes everything queued (up to
`RBR_REGISTRATION_BATCH_MAX`), commits it in one transaction and only then completes each
request's future. Nothing is acknowledged before it is durable, and with a single request in
flight this is simply one transaction per registration. `RBR_REGISTRATION_WRITERS` writers
commit batches side by side (a batch waits on the database's round trips, not on this
process), settling races between them as between registrar replicas: rows locked in name
order, a lost unique-key race decided again (`repository.with_retries`). Requests served on
an event loop wait with `decide` (an asyncio future: a batch wakes each loop once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TypeAlias

from prometheus_client import Histogram
from sqlalchemy.exc import DBAPIError

from rbr_registrar.domain import Decision, Registration
from rbr_registrar.store import BucketRepository
from rbr_runtime.db.engine import is_transient_db_error

log = logging.getLogger(__name__)

BATCH_SIZE = Histogram(
    "rbr_registration_batch_size",
    "Registrations committed per transaction (group commit).",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
_Waiter: TypeAlias = "Future[Decision] | asyncio.Future[Decision]"
_Item: TypeAlias = tuple[Registration, _Waiter]
_Outcome: TypeAlias = Decision | BaseException


class CommitterStopped(Exception):
    """The registrar is shutting down and takes no more registrations."""


class GroupCommitter:
    """Commits queued registrations in batches on its own thread (`run` / `stop`)."""

    def __init__(
        self,
        repository: BucketRepository,
        *,
        max_batch: int = 200,
        writers: int = 1,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._repository = repository
        self._max_batch = max_batch
        self._writers = writers
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, registration: Registration) -> Future[Decision]:
        """Queues a registration; the future completes once it is committed (or failed).

        Raises:
            CommitterStopped: the committer was stopped.
        """
        future: Future[Decision] = Future()
        self._put(registration, future)
        return future

    async def decide(self, registration: Registration) -> Decision:
        """Queues a registration and returns its decision once it is committed.

        For requests on an event loop: the writer completes a batch's waiters on their loop
        with one call, not one wake-up (and one concurrent future) per request.

        Raises:
            CommitterStopped: the committer was stopped.
            Exception: what the database raised when the batch could not be committed.
        """
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._put(registration, future)
        return await future

    def _put(self, registration: Registration, waiter: _Waiter) -> None:
        with self._lock:
            if self._closed:
                raise CommitterStopped("the registrar is shutting down")
            self._queue.put((registration, waiter))

    def stop(self) -> None:
        """Commits what is queued, then stops."""
        with self._lock:
            self._closed = True
            self._queue.put(None)

    def run(self) -> None:
        """Commits batches on the writer threads until stopped."""
        others = [
            threading.Thread(target=self._write, name=f"group-committer-{n}", daemon=True)
            for n in range(1, self._writers)
        ]
        for thread in others:
            thread.start()
        self._write()
        for thread in others:
            thread.join()
        self._drain()

    def _write(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                self._queue.put(None)  # the other writers stop too
                return
            batch = [first]
            stopping = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    stopping = True
                    break
                batch.append(item)
            self._commit(batch)
            if stopping:
                return

    def _drain(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._commit([item])

    def _commit(self, batch: list[_Item]) -> None:
        BATCH_SIZE.observe(len(batch))
        try:
            decisions = self._repository.register([registration for registration, _ in batch])
        except Exception as error:  # noqa: BLE001 - every waiting request gets the failure
            self._fail(batch, error)
            return
        self._on_commit()
        _settle([waiter for _, waiter in batch], decisions)

    def _fail(self, batch: list[_Item], error: Exception) -> None:
        transient = isinstance(error, DBAPIError) and is_transient_db_error(error)
        if len(batch) > 1 and not transient:
            # One registration the database refuses must not fail the others with it.
            for item in batch:
                self._commit([item])
            return
        log.error("registration not stored: %s: %s", type(error).__name__, str(error)[:300])
        _settle([waiter for _, waiter in batch], [error] * len(batch))


def _settle(waiters: Sequence[_Waiter], outcomes: Sequence[_Outcome]) -> None:
    """Completes each waiter with its outcome; those of a loop in one call on that loop."""
    on_loops: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Decision], _Outcome]]]
    on_loops = {}
    for waiter, outcome in zip(waiters, outcomes, strict=True):
        if isinstance(waiter, asyncio.Future):
            on_loops.setdefault(waiter.get_loop(), []).append((waiter, outcome))
        elif isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)
    for loop, settled in on_loops.items():
        # A loop closed meanwhile (a shutdown past its grace) has no one left to answer.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_complete, settled)


def _complete(settled: list[tuple[asyncio.Future[Decision], _Outcome]]) -> None:
    """Completes futures on their loop; a request cancelled meanwhile is skipped."""
    for future, outcome in settled:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
