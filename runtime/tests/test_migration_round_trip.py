"""Every migration can be undone and done again, on SQLite and MariaDB, leaving the schema
the table definitions declare (so a chain re-ordered at a merge is proven whole)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import alembic_config, current_revision, head_revision, upgrade
from rbr_runtime.db.tables import metadata
from rbr_testing.mariadb import create_database, drop_database, mysql_url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'rbr.db'}"


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    name = create_database()
    yield mysql_url(name)
    drop_database(name)


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(f"{request.param}_url")
    return value


def downgrade_to_base(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
    finally:
        engine.dispose()


def test_every_migration_is_undone_and_done_again_to_the_declared_schema(url: str) -> None:
    upgrade(url)
    downgrade_to_base(url)
    engine = make_engine(url)
    try:
        assert current_revision(engine) is None
        upgrade(url)
        assert current_revision(engine) == head_revision()
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
        assert differences == []
    finally:
        engine.dispose()
