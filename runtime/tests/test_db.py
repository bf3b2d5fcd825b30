"""Migrations, column types and dialect-neutral writes on SQLite and the real MariaDB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, insert, select

from rbr_runtime.db.engine import insert_ignore, make_engine, upsert
from rbr_runtime.db.migrate import current_revision, head_revision, upgrade
from rbr_runtime.db.tables import extract_cursors, logs, metadata, task_runs

SEED_LOGS_COLUMNS = {"id", "name", "ip_address", "log", "log_size", "created_at"}
SEED_ANALYSIS_COLUMNS = {"id", "name", "ip_address", "log_analysis", "created_at"}


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path}/nested/rbr.db"
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mariadb)])
def engine(request: pytest.FixtureRequest) -> Engine:
    name = "sqlite_engine" if request.param == "sqlite" else "mysql_engine"
    fixture: Engine = request.getfixturevalue(name)
    return fixture


def test_migrations_create_exactly_the_declared_schema(engine: Engine) -> None:
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_seed_columns_are_kept() -> None:
    assert set(logs.c.keys()) >= SEED_LOGS_COLUMNS
    assert set(metadata.tables["log_analysis"].c.keys()) >= SEED_ANALYSIS_COLUMNS


def test_timestamps_round_trip_as_aware_utc_with_microseconds(engine: Engine) -> None:
    paris = timezone(timedelta(hours=1))
    moment = datetime(2026, 11, 21, 10, 30, 15, 123456, tzinfo=paris)
    with engine.begin() as connection:
        connection.execute(
            insert(task_runs).values(task="t", slot="s", claimed_by="me", claimed_at=moment)
        )
        stored = connection.execute(select(task_runs.c.claimed_at)).scalar_one()
    assert stored == moment
    assert stored.tzinfo == UTC


def test_naive_timestamps_are_refused(engine: Engine) -> None:
    with pytest.raises(Exception, match="naive datetime"), engine.begin() as connection:
        connection.execute(
            insert(task_runs).values(
                task="t", slot="s", claimed_by="me", claimed_at=datetime(2026, 1, 1)
            )
        )


def test_insert_ignore_skips_existing_keys(engine: Engine) -> None:
    row = {
        "name": "rustbucket-a",
        "ip_address": "203.0.113.5",
        "log": "line",
        "log_size": 4,
        "log_format": "unparsed",
        "event_type": "unparsed",
        "source_key": "raw/x.log",
        "source_sha256": "a" * 64,
        "record_no": 0,
        # One per object, as the parser stamps its rows (the key includes it since 0028).
        "created_at": datetime(2026, 11, 20, tzinfo=UTC),
    }
    with engine.begin() as connection:
        first = connection.execute(insert_ignore(connection, logs), [row, {**row, "record_no": 1}])
        second = connection.execute(insert_ignore(connection, logs), [row])
        count = len(connection.execute(select(logs.c.id)).all())
    assert first.rowcount == 2
    assert second.rowcount == 0
    assert count == 2


def test_upsert_inserts_then_updates(engine: Engine) -> None:
    now = datetime.now(UTC)
    with engine.begin() as connection:
        for cursor in ("10", "20"):
            connection.execute(
                upsert(
                    connection,
                    extract_cursors,
                    {"name": "rustbucket-a", "http_cursor": cursor, "updated_at": now},
                    key_columns=["name"],
                    update_columns=["http_cursor", "updated_at"],
                )
            )
        rows = connection.execute(select(extract_cursors.c.http_cursor)).scalars().all()
    assert rows == ["20"]


def test_values_compare_byte_for_byte_on_both_databases(engine: Engine) -> None:
    now = datetime.now(UTC)
    with engine.begin() as connection:
        for name in ("rustbucket-aB1", "rustbucket-Ab1"):
            connection.execute(
                insert(extract_cursors).values(name=name, http_cursor=None, updated_at=now)
            )
        found = connection.execute(
            select(extract_cursors.c.name).where(extract_cursors.c.name == "rustbucket-ab1")
        ).all()
        stored = sorted(connection.execute(select(extract_cursors.c.name)).scalars())
    assert stored == ["rustbucket-Ab1", "rustbucket-aB1"]
    assert found == []


def test_server_default_timestamps_sort_with_bound_ones(engine: Engine) -> None:
    row = {
        "name": "rustbucket-a",
        "ip_address": "203.0.113.5",
        "log": "x",
        "log_size": 1,
        "log_format": "unparsed",
        "event_type": "unparsed",
        "source_key": "k",
        "source_sha256": "b" * 64,
        "record_no": 0,
    }
    with engine.begin() as connection:
        connection.execute(insert(logs).values(row))
        stamped = connection.execute(select(logs.c.created_at)).scalar_one()
        second = stamped.replace(microsecond=0)
        at_or_after = connection.execute(select(logs.c.id).where(logs.c.created_at >= second)).all()
    assert stamped.tzinfo == UTC
    assert len(at_or_after) == 1
