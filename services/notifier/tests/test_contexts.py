"""Loading a batch's contexts: which deliveries are behind an earlier one, as the EXISTS says."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from rbr_notifier.model import Kind
from rbr_notifier.store import NotifierStore
from rbr_notifier.store.deliveries import _earlier_unfinished, delivery_row
from rbr_runtime.db.bulk import insert_rows
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_runtime.db.tables import alerts, notifier_deliveries
from rbr_schemas import utcnow

STATES = ["pending", "sending", "waiting", "sent", "failed", "skipped", "throttled"]


@pytest.fixture(params=["mariadb", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "mariadb":
        yield request.getfixturevalue("mysql_engine")
        return
    url = f"sqlite:///{tmp_path / 'contexts.db'}"
    upgrade(url)
    sqlite = make_engine(url)
    yield sqlite
    sqlite.dispose()


def _plan(engine: Engine) -> list[int]:
    """Plans deliveries of three occurrences of four dedupe keys to two channels, states mixed."""
    now = utcnow()
    occurrences = [(f"key-{k}", f"alert-{k}-{j}") for k in range(4) for j in range(3)]
    alert_rows = [
        {
            "alert_id": alert_id,
            "dedupe_key": key,
            "type": "analysis_finding",
            "severity": "high",
            "state": "firing",
            "title": "t",
            "detail": "d",
            "source": "/rbr/analyst",
            "context": {},
            "fired_at": now,
            "last_seen_at": now,
            "repeats": 0,
            "last_event_id": f"event-{alert_id}",
            "updated_at": now,
        }
        for key, alert_id in occurrences
    ]
    states = itertools.cycle(STATES)
    rows = []
    for (_, alert_id), channel in itertools.product(occurrences, ("pager", "siem")):
        for kind in (Kind.TRIGGER, Kind.RESOLVE):
            rows.append({**delivery_row(alert_id, channel, kind, now), "state": next(states)})
    with engine.begin() as connection:
        insert_rows(connection, alerts, alert_rows)
        insert_rows(connection, notifier_deliveries, rows)
        return list(
            connection.execute(
                select(notifier_deliveries.c.id).order_by(notifier_deliveries.c.id)
            ).scalars()
        )


def _behind_by_exists(engine: Engine, ids: list[int]) -> set[int]:
    plan = notifier_deliveries.c
    with engine.connect() as connection:
        found = connection.execute(
            select(plan.id)
            .join(alerts, alerts.c.alert_id == plan.alert_id)
            .where(
                plan.id.in_(ids), _earlier_unfinished(plan.id, plan.channel, alerts.c.dedupe_key)
            )
        ).scalars()
        return set(found)


def test_deliveries_behind_are_those_the_exists_finds(engine: Engine) -> None:
    store = NotifierStore(engine)
    ids = _plan(engine)
    batches = [ids, ids[::2], ids[1::3], ids[-5:], ids[:1], ids[10:30]]

    for batch in batches:
        contexts = store.deliveries.contexts(batch)
        behind = {delivery_id for delivery_id, context in contexts.items() if context.behind}
        assert behind == _behind_by_exists(engine, batch)
    assert _behind_by_exists(engine, ids)  # the plan has deliveries behind others
    assert set(ids) - _behind_by_exists(engine, ids)  # and some that are not
