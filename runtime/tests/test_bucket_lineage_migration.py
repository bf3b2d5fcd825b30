"""Migration 0022: replacements and merged names, on SQLite and MariaDB, buckets kept."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import insert, inspect, select

from rbr_runtime.db.aliases import NamedBucket, bucket_named
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import alembic_config, upgrade
from rbr_runtime.db.tables import bucket_aliases, buckets
from rbr_testing.mariadb import create_database, drop_database, mysql_url

BEFORE = "0015"
"""The revision before 0022 (renumber with it)."""
REVISION = "0022"
NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'rbr.db'}"


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A database of its own (not the session's migrated one): it starts before 0022."""
    name = create_database()
    yield mysql_url(name)
    drop_database(name)


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(f"{request.param}_url")
    return value


BUCKET = {
    "id": "bucket-1",
    "name": "rustbucket-kept0000",
    "state": "active",
    "ip_address": "198.51.100.7",
    "operating_system": "linux (x86_64)",
    "token_hash": "h" * 64,
    "token_ciphertext": "ciphertext",
    "version": 3,
    "registered_at": NOW,
    "updated_at": NOW,
}


def test_buckets_are_kept_and_merged_names_resolve_after_the_migration(url: str) -> None:
    upgrade(url, BEFORE)
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            # Only the columns the table had before 0022.
            connection.execute(insert(buckets), BUCKET)

        upgrade(url, REVISION)

        with engine.begin() as connection:
            # Only the columns the table has at 0022 (later revisions add more).
            kept = connection.execute(
                select(buckets.c.name, buckets.c.version, buckets.c.replaces_id)
            ).one()
            assert (kept.name, kept.version, kept.replaces_id) == (BUCKET["name"], 3, None)
            connection.execute(
                insert(bucket_aliases).values(
                    name="rustbucket-restart0",
                    bucket_id="bucket-1",
                    merged_id="bucket-2",
                    registered_at=NOW,
                    merged_at=NOW,
                )
            )
            assert bucket_named(connection, "rustbucket-restart0") == NamedBucket(
                "bucket-1", BUCKET["name"], alias="rustbucket-restart0"
            )
            assert bucket_named(connection, "rustbucket-unknown0") is None
        indexes = {i["name"] for i in inspect(engine).get_indexes("buckets")}
        assert "ix_buckets_ip_address_operating_system" in indexes

        downgrade(url, BEFORE)
        with engine.connect() as connection:
            assert "bucket_aliases" not in inspect(connection).get_table_names()
            assert connection.execute(select(buckets.c.name)).scalars().all() == [BUCKET["name"]]
    finally:
        engine.dispose()


def downgrade(url: str, revision: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.downgrade(config, revision)
    finally:
        engine.dispose()
