"""Scheduling: fixed-interval slots, a fleet spread over them, periodic and daily tasks.

`FleetSlots` says when each bucket of a fleet is due (the poller's polls, the log-extractor's
extractions); daily tasks are claimed in `task_runs`, so exactly one replica runs each day's
run.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from rbr_runtime.db.tables import task_runs
from rbr_runtime.errors import describe_error, is_outage
from rbr_runtime.retry import Backoff
from rbr_schemas import utcnow

log = logging.getLogger(__name__)


def slot_of(moment: datetime, interval: float) -> int:
    """Returns the number of the interval slot containing the moment."""
    return int(moment.timestamp() // interval)


def slot_start(slot: int, interval: float) -> datetime:
    """Returns when a slot begins."""
    return datetime.fromtimestamp(slot * interval, UTC)


@functools.lru_cache(maxsize=1 << 17)
def phase(key: str, interval: float, spread: float = 1.0) -> float:
    """Returns a stable offset in [0, spread*interval) seconds for the key.

    Args:
        key: what to spread (a bucket name).
        interval: the slot length in seconds.
        spread: the fraction of the slot to spread over (the jitter).
    """
    # Cached: the schedulers ask for every owned key's phase at each look at the schedule.
    digest = hashlib.sha256(key.encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return fraction * interval * spread


def due_at(key: str, slot: int, interval: float, spread: float = 1.0) -> datetime:
    """Returns when the key's work in the slot is due."""
    return slot_start(slot, interval) + timedelta(seconds=phase(key, interval, spread))


@dataclass(frozen=True)
class FleetSlots:
    """When each key of a fleet (a bucket name) is due: once per slot, at its own phase.

    The one convention (the poller and the log-extractor both schedule with it):

    * slot n covers [n*interval, (n+1)*interval) since the epoch; a key's work in slot n is
      due at `due_at(key, n)`, the slot's start plus the key's phase, and due at that instant;
    * the slot a key owes at a moment is the latest slot whose due time has come: the current
      slot once the key's phase in it has passed; before that, the previous slot with
      `catch_up` (work missed while nothing ran is done at once), else none;
    * a key is due when it owes a slot after the last slot done for it (None: none known).
      The caller claims that slot number in the database, so "once per slot" holds across
      replicas, restarts and rebalances.

    Attributes:
        interval: the slot length in seconds.
        spread: the fraction of the slot the keys' phases spread over.
        catch_up: whether the previous slot is still owed before the key's phase comes.
    """

    interval: float
    spread: float = 1.0
    catch_up: bool = False

    def current(self, now: datetime) -> int:
        """Returns the number of the slot containing now."""
        return slot_of(now, self.interval)

    def due_at(self, key: str, slot: int) -> datetime:
        """Returns when the key's work in the slot is due."""
        return due_at(key, slot, self.interval, self.spread)

    def owed(self, key: str, now: datetime) -> int | None:
        """Returns the slot the key's work is owed for at now (None: none yet, no catch-up)."""
        slot = self.current(now)
        if self.due_at(key, slot) <= now:
            return slot
        return slot - 1 if self.catch_up else None

    def due_slot(self, key: str, now: datetime, last_done: int | None) -> int | None:
        """Returns the slot to do now for the key, or None if nothing is due."""
        owed = self.owed(key, now)
        if owed is None or (last_done is not None and last_done >= owed):
            return None
        return owed

    def due(
        self, keys: Iterable[str], now: datetime, done: Mapping[str, int]
    ) -> list[tuple[str, int]]:
        """Returns the keys due at now with the slot each owes, the earliest due first.

        Args:
            keys: the fleet.
            now: the moment.
            done: the last slot done per key (keys not in it: none known).
        """
        current = self.current(now)
        due = []
        for key in keys:
            last_done = done.get(key)
            if last_done is not None and last_done >= current:
                continue  # done for the current slot: nothing can be owed (the common case)
            slot = self.due_slot(key, now, last_done)
            if slot is not None:
                due.append((key, slot))
        return sorted(due, key=lambda item: (self.due_at(*item), item[0]))


def worker_identity() -> str:
    """Returns host:pid, recorded with claims so an operator can tell who ran what."""
    return f"{socket.gethostname()}:{os.getpid()}"


class PeriodicTask:
    """Calls a function every `interval` seconds on its own thread until stopped.

    The function's exceptions are logged and the next run happens on schedule: a failed run
    is retried next time, never silently dropped, because every task works from durable state.
    """

    def __init__(self, name: str, interval: float, action: Callable[[], object]) -> None:
        self.name = name
        self.interval = interval
        self._action = action
        self._stop = threading.Event()
        self._wake = threading.Event()

    def run(self) -> None:
        """Runs the action now and then every interval until stop()."""
        while not self._stop.is_set():
            self._run_once()
            self._wake.wait(self.interval)
            self._wake.clear()

    def trigger(self) -> None:
        """Runs the action as soon as possible."""
        self._wake.set()

    def stop(self) -> None:
        """Stops after the run in progress, if any."""
        self._stop.set()
        self._wake.set()

    def _run_once(self) -> None:
        try:
            self._action()
        except Exception:
            log.exception("periodic task %s failed; next run in %.0fs", self.name, self.interval)


DEFAULT_LEASE = timedelta(hours=1)
MAX_DAILY_PAUSE = 3600.0
"""Longest pause of a daily task between checks after failures."""


class TaskClaims:
    """Claims of scheduled runs in `task_runs`: the first replica to claim a slot runs it.

    A claim that was never finished (its replica was killed mid-run) can be taken over once
    its lease has expired, so a day's run is never lost to a crash.
    """

    def __init__(
        self, engine: Engine, owner: str | None = None, lease: timedelta = DEFAULT_LEASE
    ) -> None:
        self._engine = engine
        self.owner = owner or worker_identity()
        self._lease = lease

    def claim(self, task: str, slot: str) -> bool:
        """Claims the task's run for the slot; False if another replica holds or did it."""
        now = utcnow()
        try:
            with self._engine.begin() as connection:
                connection.execute(
                    insert(task_runs).values(
                        task=task, slot=slot, claimed_by=self.owner, claimed_at=now
                    )
                )
        except IntegrityError:
            return self._take_over_expired(task, slot, now)
        return True

    def _take_over_expired(self, task: str, slot: str, now: datetime) -> bool:
        with self._engine.begin() as connection:
            taken = connection.execute(
                update(task_runs)
                .where(
                    task_runs.c.task == task,
                    task_runs.c.slot == slot,
                    task_runs.c.finished_at.is_(None),
                    task_runs.c.claimed_at < now - self._lease,
                )
                .values(claimed_by=self.owner, claimed_at=now)
            )
        if taken.rowcount:
            log.warning("took over %s for %s: its claimer never finished it", task, slot)
        return bool(taken.rowcount)

    def finish(self, task: str, slot: str, outcome: str, detail: str | None = None) -> None:
        """Records how a claimed run ended."""
        with self._engine.begin() as connection:
            connection.execute(
                update(task_runs)
                .where(task_runs.c.task == task, task_runs.c.slot == slot)
                .values(finished_at=utcnow(), outcome=outcome, detail=detail)
            )

    def release(self, task: str, slot: str) -> None:
        """Gives a claimed slot back (the run failed), so it is tried again."""
        with self._engine.begin() as connection:
            connection.execute(
                delete(task_runs).where(task_runs.c.task == task, task_runs.c.slot == slot)
            )

    def skip(self, task: str, slot: str, detail: str) -> bool:
        """Records a slot as skipped (nobody claimed it yet); False if it was claimed already."""
        now = utcnow()
        try:
            with self._engine.begin() as connection:
                connection.execute(
                    insert(task_runs).values(
                        task=task,
                        slot=slot,
                        claimed_by=self.owner,
                        claimed_at=now,
                        finished_at=now,
                        outcome="skipped",
                        detail=detail,
                    )
                )
        except IntegrityError:
            return False
        return True

    def known_before(self, task: str, slot: str) -> bool:
        """Tells whether a run of the task was claimed (or skipped) for an earlier slot.

        Slots are ISO dates, so they sort as strings. A slot is claimed or skipped only once
        it is due and before the next one is, so such a row shows the task was installed
        before this slot was due: had no replica run it, it was missed (all replicas down),
        not simply due before the first start.
        """
        with self._engine.connect() as connection:
            found = connection.execute(
                select(task_runs.c.slot)
                .where(task_runs.c.task == task, task_runs.c.slot < slot)
                .limit(1)
            ).first()
        return found is not None

    def claimed_by(self, task: str, slot: str) -> str | None:
        """Returns who claimed the slot, if anyone."""
        with self._engine.connect() as connection:
            owner: str | None = connection.execute(
                select(task_runs.c.claimed_by).where(
                    task_runs.c.task == task, task_runs.c.slot == slot
                )
            ).scalar_one_or_none()
        return owner


def parse_time_of_day(value: str) -> time:
    """Parses HH:MM.

    Raises:
        ValueError: not a time of day.
    """
    hours, _, minutes = value.partition(":")
    return time(int(hours), int(minutes or 0))


def latest_occurrence(now: datetime, at: time, zone: ZoneInfo) -> tuple[date, datetime]:
    """Returns the (local date, moment) of the last time `at` passed, at or before now."""
    local_now = now.astimezone(zone)
    today = datetime.combine(local_now.date(), at, zone)
    if today <= local_now:
        return local_now.date(), today
    yesterday = local_now.date() - timedelta(days=1)
    return yesterday, datetime.combine(yesterday, at, zone)


@dataclass(frozen=True)
class DailySlot:
    """One day's run of a daily task.

    Attributes:
        day: the local date of the run (its slot in `task_runs`).
        due_at: when it was due: that day at the task's time of day, in UTC.
        caught_up: run at start-up, after its time passed while every replica was down.
    """

    day: date
    due_at: datetime
    caught_up: bool = False

    @property
    def key(self) -> str:
        """Returns the slot's key in `task_runs` (the local date)."""
        return self.day.isoformat()


class DailyTask:
    """Runs a function once a day at a local time, on exactly one replica.

    Each replica wakes at the time; the one that claims the day's slot runs it. At start-up
    the latest slot is run only if it was missed: its time passed while the task was
    installed (`task_runs` holds a run of an earlier day) and no replica ran it. A first
    start after the day's time records the slot as skipped instead, so a fresh install runs
    nothing until the time comes. A failed run gives its claim back and is tried again with
    growing pauses (`rbr_runtime.retry`, up to an hour): an outage delays it, never skips it.
    """

    def __init__(
        self,
        name: str,
        at: str,
        action: Callable[[], str | None],
        claims: TaskClaims,
        *,
        timezone: str = "UTC",
        poll_seconds: float = 30.0,
    ) -> None:
        self.name = name
        self._at = parse_time_of_day(at)
        self._zone = ZoneInfo(timezone)
        self._action: Callable[[DailySlot], str | None] = lambda _slot: action()
        self._claims = claims
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._backoff = Backoff(2 * poll_seconds, MAX_DAILY_PAUSE)

    @classmethod
    def for_slots(
        cls,
        name: str,
        at: str,
        action: Callable[[DailySlot], str | None],
        claims: TaskClaims,
        *,
        timezone: str = "UTC",
        poll_seconds: float = 30.0,
    ) -> DailyTask:
        """Returns a daily task whose action is told which day's run it does (a catch-up's)."""
        task = cls(name, at, lambda: None, claims, timezone=timezone, poll_seconds=poll_seconds)
        task._action = action
        return task

    def run(self) -> None:
        """Catches a missed run up, then checks for a due run every poll interval until stop().

        Survives database outages: a check that failed is made again after a pause.
        """
        started = False
        while not self._stop.is_set():
            try:
                if started:
                    self.run_if_due(utcnow())
                else:
                    self.catch_up_if_missed(utcnow())
                    started = True
            except Exception as error:  # noqa: BLE001 - logged by _failed, checked again
                self._failed("cannot check its run now", error)
            self._stop.wait(self._backoff.pause() or self._poll_seconds)

    def stop(self) -> None:
        """Stops waiting."""
        self._stop.set()

    @property
    def failures(self) -> int:
        """Returns how many checks or runs failed in a row (0 after a run succeeded)."""
        return self._backoff.failures

    def _failed(self, what: str, error: Exception) -> None:
        self._backoff.failed()
        if is_outage(error):
            log.warning(
                "daily task %s: %s (%s); trying again", self.name, what, describe_error(error)
            )
        else:
            log.exception("daily task %s: %s; trying again", self.name, what)

    def slot_at(self, now: datetime) -> DailySlot:
        """Returns the latest slot due at or before now."""
        day, due = latest_occurrence(now, self._at, self._zone)
        return DailySlot(day, due.astimezone(UTC))

    def catch_up_if_missed(self, now: datetime) -> bool:
        """Start-up: runs the latest slot only if it was missed; True if it ran."""
        slot = self.slot_at(now)
        if not self._claims.known_before(self.name, slot.key):
            if self._claims.skip(self.name, slot.key, "first start after its time: not missed"):
                log.info(
                    "daily task %s: first start after %s's run was due; next run at %s",
                    self.name,
                    slot.key,
                    self._at.strftime("%H:%M"),
                )
            return False
        return self._run(DailySlot(slot.day, slot.due_at, caught_up=True))

    def run_if_due(self, now: datetime) -> bool:
        """Runs the latest due slot if no replica claimed it; True if it ran."""
        return self._run(self.slot_at(now))

    def _run(self, slot: DailySlot) -> bool:
        if not self._claims.claim(self.name, slot.key):
            return False
        how = "missed while down, caught up" if slot.caught_up else "due"
        log.info("running daily task %s for %s (%s)", self.name, slot.key, how)
        try:
            detail = self._action(slot)
        except Exception as error:  # noqa: BLE001 - logged by _failed, run again
            self._failed(f"the run for {slot.key} failed", error)
            self._claims.release(self.name, slot.key)
            return True
        self._backoff.succeeded()
        self._claims.finish(self.name, slot.key, "ok", detail)
        return True
