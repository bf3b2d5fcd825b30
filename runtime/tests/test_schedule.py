"""Slots, phases and daily tasks claimed once across replicas."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from rbr_runtime.db.engine import make_engine
from rbr_runtime.schedule import (
    DailySlot,
    DailyTask,
    TaskClaims,
    due_at,
    latest_occurrence,
    phase,
    slot_of,
    slot_start,
)
from rbr_testing.waiting import wait_for

pytestmark = pytest.mark.mariadb


def test_phases_are_stable_and_spread_over_the_slot() -> None:
    phases = [phase(f"rustbucket-{i}", 300) for i in range(1000)]
    assert phases == [phase(f"rustbucket-{i}", 300) for i in range(1000)]
    assert all(0 <= p < 300 for p in phases)
    # Spread: every 30-second tenth of the slot gets some buckets.
    assert {int(p // 30) for p in phases} == set(range(10))


def test_due_time_falls_inside_its_slot() -> None:
    now = datetime(2026, 11, 21, 9, 7, 30, tzinfo=UTC)
    slot = slot_of(now, 300)
    assert slot_start(slot, 300) == datetime(2026, 11, 21, 9, 5, tzinfo=UTC)
    due = due_at("rustbucket-a", slot, 300, spread=0.5)
    assert slot_start(slot, 300) <= due < slot_start(slot, 300).replace(minute=7, second=30)


def test_latest_occurrence_in_local_time() -> None:
    zone = ZoneInfo("Europe/Paris")
    before = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)  # 07:00 in Paris
    after = datetime(2026, 11, 21, 7, 30, tzinfo=UTC)  # 08:30 in Paris
    assert latest_occurrence(before, time(8), zone)[0].isoformat() == "2026-11-20"
    assert latest_occurrence(after, time(8), zone)[0].isoformat() == "2026-11-21"


def test_a_daily_run_happens_on_exactly_one_replica(mysql_engine: Engine) -> None:
    runs: list[str] = []
    replicas = [
        DailyTask("cleanup", "02:00", lambda n=n: runs.append(n), TaskClaims(mysql_engine, n))
        for n in ("replica-a", "replica-b", "replica-c")
    ]
    now = datetime(2026, 11, 21, 2, 0, 5, tzinfo=UTC)
    outcomes = [replica.run_if_due(now) for replica in replicas]
    assert outcomes.count(True) == 1
    assert len(runs) == 1
    assert TaskClaims(mysql_engine).claimed_by("cleanup", "2026-11-21") == runs[0]
    # The next day is a new slot.
    assert replicas[1].run_if_due(datetime(2026, 11, 22, 3, 0, tzinfo=UTC))


def test_a_failed_daily_run_is_tried_again(mysql_engine: Engine) -> None:
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("S3 down")
        return "deleted 3 objects"

    task = DailyTask("cleanup", "02:00", flaky, TaskClaims(mysql_engine))
    now = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)
    task.run_if_due(now)
    assert task.run_if_due(now) is True
    assert len(attempts) == 2
    assert task.run_if_due(now) is False


def test_a_run_whose_claimer_died_is_taken_over_after_its_lease(mysql_engine: Engine) -> None:
    runs: list[str] = []
    now = datetime(2026, 11, 21, 2, 0, 5, tzinfo=UTC)
    dead = TaskClaims(mysql_engine, "replica-dead", lease=timedelta(minutes=30))
    assert dead.claim("cleanup", "2026-11-21")  # and then it was killed mid-run

    survivor = DailyTask(
        "cleanup",
        "02:00",
        lambda: runs.append("ran") or "done",
        TaskClaims(mysql_engine, "replica-b", lease=timedelta(seconds=0)),
    )
    assert survivor.run_if_due(now)
    assert runs == ["ran"]
    patient = TaskClaims(mysql_engine, "replica-c", lease=timedelta(minutes=30))
    assert not patient.claim("cleanup", "2026-11-21"), "a finished run is never taken over"


def test_daily_task_survives_a_database_outage() -> None:
    engine = make_engine("mysql+pymysql://root@127.0.0.1:9/nowhere")
    task = DailyTask("cleanup", "02:00", lambda: "done", TaskClaims(engine), poll_seconds=0.01)
    thread = threading.Thread(target=task.run, daemon=True)
    thread.start()
    wait_for(lambda: task.failures >= 2, message="two failed checks")
    assert thread.is_alive(), "the component died with the database"
    task.stop()
    thread.join(10)


def test_a_first_start_after_the_time_runs_nothing_until_the_next_day(
    mysql_engine: Engine,
) -> None:
    slots: list[DailySlot] = []
    task = DailyTask.for_slots(
        "summary", "08:00", lambda slot: slots.append(slot) or "sent", TaskClaims(mysql_engine)
    )
    first_start = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)

    assert not task.catch_up_if_missed(first_start)
    assert not task.run_if_due(first_start + timedelta(minutes=1)), "the day was not missed"
    assert slots == []
    assert task.run_if_due(datetime(2026, 11, 22, 8, 0, 30, tzinfo=UTC))
    assert slots == [DailySlot(date(2026, 11, 22), datetime(2026, 11, 22, 8, 0, tzinfo=UTC))]


def test_a_day_missed_while_every_replica_was_down_is_caught_up_as_that_day(
    mysql_engine: Engine,
) -> None:
    slots: list[DailySlot] = []
    claims = TaskClaims(mysql_engine)
    task = DailyTask.for_slots(
        "summary", "08:00", lambda slot: slots.append(slot) or "sent", claims, timezone="UTC"
    )
    assert task.run_if_due(datetime(2026, 11, 20, 8, 0, 10, tzinfo=UTC))  # ran, then all down

    # Back at 07:00 on the 22nd: the 21st's run was missed; the 22nd's is not due yet.
    assert task.catch_up_if_missed(datetime(2026, 11, 22, 7, 0, tzinfo=UTC))
    assert slots[-1] == DailySlot(
        date(2026, 11, 21), datetime(2026, 11, 21, 8, 0, tzinfo=UTC), caught_up=True
    )
    assert not task.catch_up_if_missed(datetime(2026, 11, 22, 7, 5, tzinfo=UTC)), "once a day"
    assert task.run_if_due(datetime(2026, 11, 22, 8, 0, 5, tzinfo=UTC))
    assert [slot.key for slot in slots] == ["2026-11-20", "2026-11-21", "2026-11-22"]
