"""A batch's new buckets and outbox messages, written the fast way, are what SQLAlchemy wrote.

The group commit writes its new rows with `rbr_runtime.db.bulk.insert_rows` on connections
whose datetimes PyMySQL converts the cheaper way (`rbr_runtime.db.driver`). The same rows go
into two databases on MariaDB, one that way and one through SQLAlchemy's own INSERT on a plain
engine; every column of every row must come back the same, read through either engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from rbr_registrar.domain import Registration, S3Config, new_bucket, registration_message
from rbr_registrar.store import OUTBOX, _without_nulls
from rbr_runtime.db.bulk import _compiled, insert_rows
from rbr_runtime.db.driver import speed_up_datetimes
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.migrate import upgrade
from rbr_runtime.db.tables import buckets, outbox
from rbr_runtime.outbox import OutboxMessage
from rbr_schemas import BUCKET_REGISTERED, DeliveryMode
from rbr_testing.mariadb import create_database, drop_database, mysql_url

pytestmark = pytest.mark.mariadb

NOW = datetime(2026, 12, 3, 8, 5, 7, 123456, tzinfo=UTC)


def registrations() -> list[Registration]:
    return [
        Registration(
            name=f"rustbucket-{i:04d}",
            ip_address="203.0.113.7" if i % 2 else "2001:db8::17",
            port=None if i % 3 else 8443,
            operating_system="linux (x86_64) 'quoted' \\ back\\slash · ünïcode ✓",
            metrics={"cpu_usage": "12%", "uptime": "3 days"} if i % 2 else {},
            s3=S3Config("drops-bucket", "eu-west-1", "logs/") if i == 2 else None,
            token_hash=f"{i:064x}",
            token_ciphertext=f"gAAAAAB-ciphertext-{i}",
            tls_cert_sha256="ab" * 32 if i == 1 else None,
            delivery_mode=DeliveryMode.AGENT if i == 1 else None,
            enrolled=i % 2 == 0,
        )
        for i in range(5)
    ]


@pytest.fixture
def plain_engine() -> Iterator[Engine]:
    name = create_database()
    url = mysql_url(name)
    upgrade(url)
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        drop_database(name)


def table_rows(engine: Engine, table: Any, order: Any) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(select(table).order_by(order))]


def test_new_buckets_and_messages_are_stored_as_sqlalchemy_stores_them(
    mysql_engine: Engine, plain_engine: Engine
) -> None:
    fast_engine = make_engine(mysql_engine.url.render_as_string(hide_password=False))
    speed_up_datetimes(fast_engine)
    rows = [
        new_bucket(r, f"00000000-0000-4000-8000-{i:012d}", NOW + timedelta(microseconds=i))
        for i, r in enumerate(registrations())
    ]
    bucket_values = _without_nulls([row.values() for row in rows])
    messages = [
        OutboxMessage(BUCKET_REGISTERED.name, row.name, registration_message(row)) for row in rows
    ]
    messages.append(OutboxMessage(BUCKET_REGISTERED.name, "removed-bucket", None))
    columns = tuple(sorted(bucket_values[0]))
    assert _compiled(fast_engine.dialect, buckets, columns, False) is not None  # the fast way

    with fast_engine.begin() as connection:
        insert_rows(connection, buckets, bucket_values)
        OUTBOX.add(connection, messages, NOW)
    with plain_engine.begin() as connection:
        connection.execute(insert(buckets), bucket_values)
        connection.execute(
            insert(outbox),
            [
                {
                    "service": OUTBOX.service,
                    "topic": message.topic,
                    "message_key": message.key,
                    "value": message.value,
                    "created_at": NOW,
                }
                for message in messages
            ],
        )

    try:
        for table, order in ((buckets, buckets.c.name), (outbox, outbox.c.id)):
            expected = table_rows(plain_engine, table, order)
            assert len(expected) == len(rows) + (table is outbox)
            assert table_rows(fast_engine, table, order) == expected
            assert table_rows(mysql_engine, table, order) == expected
    finally:
        fast_engine.dispose()
