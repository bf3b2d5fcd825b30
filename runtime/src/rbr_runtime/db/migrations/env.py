"""Alembic environment: migrates the database named by the config or RBR_DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection

from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.tables import metadata

DEFAULT_URL = "sqlite:///./var/rbr.db"

config = context.config
url = config.get_main_option("sqlalchemy.url") or os.environ.get("RBR_DATABASE_URL", DEFAULT_URL)


def run_migrations_offline() -> None:
    """Writes the SQL to stdout instead of running it (`alembic upgrade head --sql`)."""
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Runs the migrations on a live connection."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(url)
    with engine.connect() as new_connection:
        _run(new_connection)
    engine.dispose()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
