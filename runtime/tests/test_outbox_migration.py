"""Migration 0023: the registrar's and the analyst's waiting messages move to one outbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, MetaData, Table, insert, select

from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import alembic_config, upgrade
from rbr_runtime.db.tables import outbox
from rbr_testing.mariadb import create_database, drop_database, mysql_url

BEFORE = "0022"
"""The revision before the one that merged the outboxes (renumber with it)."""
AT = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'rbr.db'}"


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A database of its own (not the session's migrated one): it starts before 0023."""
    name = create_database()
    yield mysql_url(name)
    drop_database(name)


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(f"{request.param}_url")
    return value


def downgrade(url: str, revision: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.downgrade(config, revision)
    finally:
        engine.dispose()


def old_rows(service: str, values: list[bytes | None]) -> list[dict[str, Any]]:
    return [
        {
            "topic": f"{service}-topic",
            "message_key": f"key-{n}",
            "value": value,
            # Naive UTC, as stored: the reflected old tables have no UtcDateTime type.
            "created_at": (AT + timedelta(seconds=n)).replace(tzinfo=None),
        }
        for n, value in enumerate(values)
    ]


def read(engine: Engine, table: Table) -> list[tuple[Any, ...]]:
    columns = [table.c.topic, table.c.message_key, table.c.value]
    with engine.connect() as connection:
        return [tuple(r) for r in connection.execute(select(*columns).order_by(table.c.id))]


def test_waiting_messages_move_to_the_outbox_in_order_and_back(url: str) -> None:
    upgrade(url, BEFORE)
    engine = make_engine(url)
    old = MetaData()
    old.reflect(engine, only=["registrar_outbox", "analyst_outbox"])
    registrar = old_rows("registrar", [b"r0", None, b"r2"])
    analyst = old_rows("analyst", [b"a0", b"a1"])
    with engine.begin() as connection:
        connection.execute(insert(old.tables["analyst_outbox"]), analyst)
        connection.execute(insert(old.tables["registrar_outbox"]), registrar)

    upgrade(url)

    def merged(service: str) -> list[tuple[Any, ...]]:
        with engine.connect() as connection:
            query = (
                select(outbox.c.topic, outbox.c.message_key, outbox.c.value, outbox.c.created_at)
                .where(outbox.c.service == service)
                .order_by(outbox.c.id)
            )
            return [tuple(r) for r in connection.execute(query)]

    def expected(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [
            (r["topic"], r["message_key"], r["value"], r["created_at"].replace(tzinfo=UTC))
            for r in rows
        ]

    assert merged("registrar") == expected(registrar)
    assert merged("analyst") == expected(analyst)

    downgrade(url, BEFORE)

    back = MetaData()
    back.reflect(engine, only=["registrar_outbox", "analyst_outbox"])
    assert read(engine, back.tables["registrar_outbox"]) == [r[:3] for r in expected(registrar)]
    assert read(engine, back.tables["analyst_outbox"]) == [r[:3] for r in expected(analyst)]
    engine.dispose()
