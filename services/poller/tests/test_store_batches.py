"""The batched writes of `poller_state` leave the same rows as one statement per bucket did.

The reference below is the store's previous code (one UPDATE per claim, two per outcome); the
same random histories go through both, on MariaDB and on SQLite, and every column of every
row is compared.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, case, delete, insert, or_, select, update
from sqlalchemy.engine import Connection

from rbr_poller.store import Outcome, PollerStateStore
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_runtime.db.tables import poller_state

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
GAP = 600.0
NAMES = [f"rustbucket-{i:03d}" for i in range(60)]


# -- the reference: one statement per bucket ---------------------------------------------------


def _of(outcome: Outcome) -> Any:
    same_name = poller_state.c.name == outcome.name
    if outcome.bucket_id is None:
        return same_name
    return same_name & or_(
        poller_state.c.bucket_id.is_(None), poller_state.c.bucket_id == outcome.bucket_id
    )


def record_each(engine: Engine, outcomes: Sequence[Outcome]) -> None:
    with engine.begin() as connection:
        for outcome in outcomes:
            _record_attempt(connection, outcome)
            _record_result(connection, outcome)


def _record_attempt(connection: Connection, outcome: Outcome) -> None:
    column = poller_state.c
    polled_at = outcome.polled_at
    resumed = or_(
        column.last_attempt_at.is_(None),
        column.polling_since.is_(None),
        column.last_attempt_at < polled_at - timedelta(seconds=GAP),
    )
    newer = or_(column.last_attempt_at.is_(None), column.last_attempt_at < polled_at)
    connection.execute(
        update(poller_state)
        .where(_of(outcome))
        .ordered_values(
            (column.polling_since, case((resumed, polled_at), else_=column.polling_since)),
            (column.last_attempt_at, case((newer, polled_at), else_=column.last_attempt_at)),
        )
    )


def _record_result(connection: Connection, outcome: Outcome) -> None:
    if outcome.success:
        connection.execute(
            update(poller_state)
            .where(
                _of(outcome),
                or_(
                    poller_state.c.last_success_at.is_(None),
                    poller_state.c.last_success_at < outcome.polled_at,
                ),
            )
            .values(
                last_success_at=outcome.polled_at,
                consecutive_failures=0,
                last_error_class=None,
                last_error=None,
            )
        )
        return
    connection.execute(
        update(poller_state)
        .where(_of(outcome))
        .values(
            consecutive_failures=poller_state.c.consecutive_failures + 1,
            last_error_class=outcome.error_class,
            last_error=(outcome.error or "")[:500] or None,
        )
    )


def claim_each(engine: Engine, names: Sequence[str], slot: int, now: datetime) -> list[str]:
    claimed = []
    with engine.begin() as connection:
        for name in sorted(names):
            result = connection.execute(
                update(poller_state)
                .where(poller_state.c.name == name, poller_state.c.last_poll_slot < slot)
                .values(last_poll_slot=slot, last_poll_at=now)
            )
            if result.rowcount == 1:
                claimed.append(name)
    return claimed


# -- random histories --------------------------------------------------------------------------


def _moment(rng: random.Random) -> datetime | None:
    if rng.random() < 0.25:
        return None
    # Some exactly equal to a poll's time, some within the gap, some beyond it.
    return T0 + timedelta(seconds=rng.choice([-2000, -700, -600, -30, 0, 0, 15, 900]))


def _rows(rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "first_seen_at": T0 - timedelta(hours=1),
            "last_poll_slot": rng.choice([-1, 3, 5]),
            "bucket_id": rng.choice([None, f"id-{name}", "id-someone-else"]),
            "last_attempt_at": _moment(rng),
            "polling_since": _moment(rng),
            "last_success_at": _moment(rng),
            "consecutive_failures": rng.choice([0, 0, 2]),
            "last_error_class": rng.choice([None, "timeout"]),
            "last_error": rng.choice([None, "timed out after 10s"]),
        }
        for name in NAMES
    ]


def _outcomes(rng: random.Random, count: int) -> list[Outcome]:
    outcomes = []
    for _ in range(count):
        name = rng.choice([*NAMES, "not-a-known-bucket"])
        success = rng.random() < 0.5
        outcomes.append(
            Outcome(
                name=name,
                polled_at=T0 + timedelta(seconds=rng.choice([-700, -1, 0, 1, 20, 700])),
                success=success,
                error_class=None if success else rng.choice(["timeout", "refused"]),
                error=None if success else rng.choice(["", "x" * 600, "connection refused"]),
                bucket_id=rng.choice([None, f"id-{name}", "id-someone-else"]),
            )
        )
    return outcomes


def _reset(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as connection:
        connection.execute(delete(poller_state))
        connection.execute(insert(poller_state), rows)


def _snapshot(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(select(poller_state).order_by(poller_state.c.name))
        return [dict(row._mapping) for row in rows]


def _same_rows_either_way(engine: Engine, seed: int) -> None:
    rng = random.Random(seed)
    rows, outcomes = _rows(rng), _outcomes(rng, 250)
    store = PollerStateStore(engine, polling_gap=GAP)

    _reset(engine, rows)
    record_each(engine, outcomes)
    expected = _snapshot(engine)
    _reset(engine, rows)
    store.record(outcomes)
    assert _snapshot(engine) == expected

    wanted = rng.sample(NAMES, 40)
    _reset(engine, rows)
    expected_claims = claim_each(engine, wanted, 5, T0)
    expected = _snapshot(engine)
    _reset(engine, rows)
    assert store.claim(wanted, 5, T0) == expected_claims
    assert _snapshot(engine) == expected


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path}/rbr.db"
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("seed", range(5))
def test_batched_writes_match_one_statement_per_bucket_on_sqlite(
    sqlite_engine: Engine, seed: int
) -> None:
    _same_rows_either_way(sqlite_engine, seed)


@pytest.mark.mariadb
@pytest.mark.parametrize("seed", range(5))
def test_batched_writes_match_one_statement_per_bucket_on_mariadb(
    mysql_engine: Engine, seed: int
) -> None:
    _same_rows_either_way(mysql_engine, seed)


def test_outcomes_of_one_bucket_in_one_batch_apply_in_order(sqlite_engine: Engine) -> None:
    store = PollerStateStore(sqlite_engine, polling_gap=GAP)
    store.ensure({"b-1": "id-1"}, T0)
    failed = Outcome("b-1", T0, success=False, error_class="timeout", error="timed out")
    succeeded = Outcome("b-1", T0 + timedelta(seconds=5), success=True)
    store.record([failed, succeeded, replace_time(failed, 10), replace_time(failed, 20)])
    (row,) = _snapshot(sqlite_engine)
    assert row["last_success_at"] == T0 + timedelta(seconds=5)
    assert row["consecutive_failures"] == 2
    assert row["last_attempt_at"] == T0 + timedelta(seconds=20)


def replace_time(outcome: Outcome, seconds: int) -> Outcome:
    return Outcome(
        outcome.name,
        T0 + timedelta(seconds=seconds),
        outcome.success,
        outcome.error_class,
        outcome.error,
        outcome.bucket_id,
    )
