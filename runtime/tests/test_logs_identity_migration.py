"""Migration 0012: logs rows keyed by (object sha256, bucket, record number), data kept."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, column, delete, insert, inspect, select, table
from sqlalchemy.exc import IntegrityError

from rbr_runtime.db.engine import insert_ignore, make_engine
from rbr_runtime.db.migrate import alembic_config, current_revision, head_revision, upgrade
from rbr_runtime.db.tables import logs
from rbr_testing.mariadb import create_database, drop_database, mysql_url

BEFORE = "0011"
"""The revision before the one that changed the key (renumber with it)."""
CHANGED = "0012"
"""The revision that changed the key: the downgrade starts there, so later revisions' own
downgrades (DDL commits on MariaDB) are not run again when the refused one is retried."""
SHARED = "a" * 64
OWN = "b" * 64
CREATED_AT = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
"""Every row's created_at: the parser stamps an object's rows with one (log_objects, 0028)."""
# The parser's done markers, between 0011 and 0027 (which dropped them).
parsed_objects = table(
    "parsed_objects",
    column("event_id"),
    column("source_sha256"),
    column("parsed_event"),
    column("parsed_at"),
)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'rbr.db'}"


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A database of its own (not the session's migrated one): it starts before 0012."""
    name = create_database()
    yield mysql_url(name)
    drop_database(name)


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(f"{request.param}_url")
    return value


def rows(name: str, sha256: str, count: int) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "ip_address": "203.0.113.5",
            "log": f"line {number}",
            "log_size": 6,
            "log_format": "unknown",
            "event_type": "unparsed",
            "source_key": f"raw/{name}/{sha256[:8]}.log",
            "source_sha256": sha256,
            "record_no": number,
            "created_at": CREATED_AT,
        }
        for number in range(count)
    ]


def insert_new(engine: Engine, batch: list[dict[str, Any]]) -> int:
    """Inserts as the parser does (INSERT IGNORE); returns how many rows were new."""
    with engine.begin() as connection:
        inserted: int = connection.execute(insert_ignore(connection, logs), batch).rowcount
    return inserted


def stored(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        result = connection.execute(
            select(
                logs.c.id, logs.c.name, logs.c.source_sha256, logs.c.record_no, logs.c.log
            ).order_by(logs.c.id)
        )
        return [tuple(row) for row in result]


def unique_keys(engine: Engine) -> list[list[str]]:
    return sorted(
        [str(column) for column in constraint["column_names"]]
        for constraint in inspect(engine).get_unique_constraints("logs")
    )


def downgrade(url: str, revision: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.downgrade(config, revision)
    finally:
        engine.dispose()


def test_existing_rows_are_kept_and_identical_content_of_another_bucket_then_gets_its_rows(
    url: str,
) -> None:
    upgrade(url, BEFORE)
    engine = make_engine(url)
    try:
        assert (
            insert_new(engine, rows("rustbucket-a", SHARED, 5) + rows("rustbucket-a", OWN, 3)) == 8
        )
        # Under the old key another bucket's identical object gets no rows: the data loss.
        assert insert_new(engine, rows("rustbucket-b", SHARED, 5)) == 0
        marker = {"event_id": "e-1", "source_sha256": SHARED, "parsed_event": "{}"}
        with engine.begin() as connection:
            connection.execute(
                insert(parsed_objects).values(marker | {"parsed_at": datetime.now(UTC)})
            )
        before = stored(engine)

        upgrade(url, CHANGED)
        with engine.connect() as connection:
            assert connection.execute(select(parsed_objects.c.event_id)).scalars().all() == ["e-1"]
        upgrade(url)

        assert current_revision(engine) == head_revision()
        assert stored(engine) == before
        # 0028 added created_at, one per object, for day partitions: the identity is the same.
        assert unique_keys(engine) == [["source_sha256", "name", "record_no", "created_at"]]
        assert "parsed_objects" not in inspect(engine).get_table_names()  # dropped by 0027
        # Another bucket's identical object now gets all its rows, once.
        assert insert_new(engine, rows("rustbucket-b", SHARED, 5)) == 5
        assert insert_new(engine, rows("rustbucket-b", SHARED, 5)) == 0
        # The same bucket's content stored again (another key) still adds nothing.
        again = [
            row | {"source_key": "raw/rustbucket-a/again.log"}
            for row in rows("rustbucket-a", SHARED, 5)
        ]
        assert insert_new(engine, again) == 0
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(insert(logs), rows("rustbucket-b", SHARED, 1))
        assert len(stored(engine)) == 13
    finally:
        engine.dispose()


def test_downgrade_refuses_while_two_buckets_share_content_then_restores_the_old_key(
    url: str,
) -> None:
    upgrade(url, CHANGED)
    engine = make_engine(url)
    try:
        insert_new(engine, rows("rustbucket-a", SHARED, 3) + rows("rustbucket-b", SHARED, 3))
        with pytest.raises(RuntimeError, match="3 records of logs are held by more than one"):
            downgrade(url, BEFORE)
        assert unique_keys(engine) == [["source_sha256", "name", "record_no"]]
        with engine.begin() as connection:
            connection.execute(delete(logs).where(logs.c.name == "rustbucket-b"))

        downgrade(url, BEFORE)

        assert current_revision(engine) == BEFORE
        assert unique_keys(engine) == [["source_sha256", "record_no"]]
        assert len(stored(engine)) == 3
    finally:
        engine.dispose()
