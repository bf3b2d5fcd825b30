"""The real MariaDB at 127.0.0.1:3306: a fresh, migrated database per test session.

Tests that write tables get `mysql_engine`, which empties every table first, so each test
starts from a clean database without paying for a migration each time.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pymysql
import pytest
from sqlalchemy import Engine, text

from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_runtime.db.tables import metadata

MARIADB_HOST = os.environ.get("RBR_TEST_MARIADB_HOST", "127.0.0.1")
MARIADB_PORT = int(os.environ.get("RBR_TEST_MARIADB_PORT", "3306"))
MARIADB_USER = os.environ.get("RBR_TEST_MARIADB_USER", "root")
MARIADB_PASSWORD = os.environ.get("RBR_TEST_MARIADB_PASSWORD", "")

HOW_TO_START = (
    "MariaDB is not reachable at {host}:{port}: {error}. Start it with "
    "'start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd' "
    "(or point RBR_TEST_MARIADB_HOST/PORT/USER/PASSWORD at a server)."
)


def _server_connection() -> pymysql.Connection:
    try:
        return pymysql.connect(
            host=MARIADB_HOST,
            port=MARIADB_PORT,
            user=MARIADB_USER,
            password=MARIADB_PASSWORD,
            autocommit=True,
        )
    except pymysql.err.OperationalError as error:
        pytest.fail(HOW_TO_START.format(host=MARIADB_HOST, port=MARIADB_PORT, error=error))


def mysql_url(database: str) -> str:
    """Returns the SQLAlchemy URL of a database on the test server."""
    auth = MARIADB_USER + (f":{MARIADB_PASSWORD}" if MARIADB_PASSWORD else "")
    return f"mysql+pymysql://{auth}@{MARIADB_HOST}:{MARIADB_PORT}/{database}"


def create_database() -> str:
    """Creates an empty database with a unique name and returns the name."""
    name = f"rbr_test_{uuid.uuid4().hex[:12]}"
    with _server_connection() as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    return name


def drop_database(name: str) -> None:
    """Drops a database made by create_database."""
    with _server_connection() as connection, connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(scope="session")
def mysql_database_url() -> Iterator[str]:
    """A migrated database on the real MariaDB, dropped after the session."""
    name = create_database()
    url = mysql_url(name)
    upgrade(url)
    yield url
    drop_database(name)


def truncate_all(engine: Engine) -> None:
    """Empties every table of the registry schema."""
    with engine.begin() as connection:
        connection.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
        for table in metadata.sorted_tables:
            connection.execute(text(f"TRUNCATE TABLE `{table.name}`"))
        connection.execute(text("SET FOREIGN_KEY_CHECKS = 1"))


@pytest.fixture
def mysql_engine(mysql_database_url: str) -> Iterator[Engine]:
    """An engine on the session's database, every table emptied before the test."""
    engine = make_engine(mysql_database_url)
    truncate_all(engine)
    yield engine
    engine.dispose()
