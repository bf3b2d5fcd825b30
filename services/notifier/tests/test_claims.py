"""Claiming a batch of deliveries: all of them at once, or exactly the claimable ones."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, insert, select, update

from rbr_notifier.model import Kind
from rbr_notifier.store import NotifierStore
from rbr_notifier.store.deliveries import delivery_row
from rbr_notifier.store.rows import literal_ids
from rbr_runtime.db.tables import notifier_deliveries
from rbr_schemas import utcnow

LEASE = timedelta(minutes=10)


def _plan(engine: Engine, count: int) -> list[int]:
    now = utcnow()
    rows = [delivery_row(f"alert-{i}", "pager", Kind.TRIGGER, now) for i in range(count)]
    with engine.begin() as connection:
        connection.execute(insert(notifier_deliveries), rows)
        return list(connection.execute(select(notifier_deliveries.c.id)).scalars())


def _set(engine: Engine, delivery_id: int, **values: object) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(notifier_deliveries)
            .where(notifier_deliveries.c.id == delivery_id)
            .values(**values)
        )


def test_a_batch_all_claimable_is_claimed_whole(mysql_engine: Engine) -> None:
    store = NotifierStore(mysql_engine)
    ids = _plan(mysql_engine, 5)

    assert store.deliveries.claim_many(ids + ids[:1], "replica-1", LEASE) == set(ids)
    assert store.deliveries.claim_many(ids, "replica-1", LEASE) == set(ids)  # ours already

    with mysql_engine.connect() as connection:
        rows = connection.execute(select(notifier_deliveries)).all()
    assert {(r.state, r.claimed_by) for r in rows} == {("sending", "replica-1")}


def test_a_mixed_batch_gets_exactly_the_claimable_ones(mysql_engine: Engine) -> None:
    store = NotifierStore(mysql_engine)
    pending, held, stale, ended, not_due, due = _plan(mysql_engine, 6)
    now = utcnow()
    _set(mysql_engine, held, state="sending", claimed_by="replica-2", claimed_at=now)
    _set(
        mysql_engine,
        stale,
        state="sending",
        claimed_by="replica-2",
        claimed_at=now - 2 * LEASE,
    )
    _set(mysql_engine, ended, state="sent")
    _set(mysql_engine, not_due, state="waiting", next_attempt_at=now + timedelta(hours=1))
    _set(mysql_engine, due, state="waiting", next_attempt_at=now - timedelta(seconds=1))

    claimed = store.deliveries.claim_many(
        [pending, held, stale, ended, not_due, due], "replica-1", LEASE
    )

    assert claimed == {pending, stale, due}
    with mysql_engine.connect() as connection:
        rows = {r.id: r for r in connection.execute(select(notifier_deliveries))}
    assert (rows[held].state, rows[held].claimed_by) == ("sending", "replica-2")
    assert rows[ended].state == "sent"
    assert rows[not_due].state == "waiting"


def test_ids_written_into_statements_are_numbers_only() -> None:
    assert literal_ids([3, 1]).value == [3, 1]
    with pytest.raises(ValueError):
        literal_ids(["1) OR (1=1"])  # type: ignore[list-item]
