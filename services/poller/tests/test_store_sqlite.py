"""Slot claims on SQLite (the local stack's database)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from rbr_poller.store import PollerStateStore
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade


def test_slot_claims_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/rbr.db"
    upgrade(url)
    engine = make_engine(url)
    store = PollerStateStore(engine, polling_gap=600.0)
    moment = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    store.ensure({"b-1": "id-1", "b-2": "id-2"}, moment)
    assert store.claim(["b-1", "b-2"], 5, moment) == ["b-1", "b-2"]
    assert store.claim(["b-1", "b-2"], 5, moment) == []
    assert store.claim(["b-2"], 6, moment) == ["b-2"]
    engine.dispose()
