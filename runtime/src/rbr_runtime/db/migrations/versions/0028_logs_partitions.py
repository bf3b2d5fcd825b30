"""parser: logs partitioned by day on MySQL; log_objects fixes each object's created_at

Retention then drops whole days (partitions) instead of deleting rows. A partitioned table
needs its partition column in every unique key, so the key (source_sha256, name, record_no)
becomes (source_sha256, name, record_no, created_at) and the primary key (id, created_at).
The identity of a row does not change: `log_objects` gives each object of a bucket one
created_at, the moment it was first parsed, which every parse of it reuses, so a replay's
rows collide with the rows already in. Existing objects get the earliest created_at of their
rows, and their rows that carried another (an object whose parse was resumed) take it too.

MySQL/MariaDB: one partition per UTC day from the oldest row's day (at most a year back:
older rows share the first) to a week ahead, then a catch-all (MAXVALUE); the parser creates
the next days itself. This rebuilds the table (a copy of every row). SQLite: unpartitioned.

Revision ID: 0028
Revises: 0026
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from alembic import op

import rbr_runtime.db.types
from rbr_runtime.db.partitions import days_between, partition_definitions

revision: str = "0028"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KEY = "uq_logs_source_sha256_name_record_no"
NEW_KEY = "uq_logs_source_sha256_name_record_no_created_at"
DAYS_AHEAD = 7
OLDEST_DAY_PARTITION = 365


def upgrade() -> None:
    op.create_table(
        "log_objects",
        sa.Column("source_sha256", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column(
            "created_at",
            rbr_runtime.db.types.UtcDateTime(),
            nullable=False,
            comment="first parse; the created_at of all the object's rows",
        ),
        sa.PrimaryKeyConstraint("source_sha256", "name", name=op.f("pk_log_objects")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("log_objects", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_log_objects_created_at"), ["created_at"])
    op.execute(
        "INSERT INTO log_objects (source_sha256, name, created_at) "
        "SELECT source_sha256, name, MIN(created_at) FROM logs GROUP BY source_sha256, name"
    )
    if op.get_bind().dialect.name == "sqlite":
        _align_created_at_sqlite()
        with op.batch_alter_table("logs") as batch:
            batch.create_unique_constraint(
                NEW_KEY, ["source_sha256", "name", "record_no", "created_at"]
            )
            batch.drop_constraint(OLD_KEY, type_="unique")
        return
    op.execute(
        "UPDATE logs JOIN log_objects o "
        "ON logs.source_sha256 = o.source_sha256 AND logs.name = o.name "
        "SET logs.created_at = o.created_at WHERE logs.created_at <> o.created_at"
    )
    op.execute(
        f"ALTER TABLE logs DROP PRIMARY KEY, ADD PRIMARY KEY (id, created_at), "
        f"DROP INDEX {OLD_KEY}, "
        f"ADD UNIQUE KEY {NEW_KEY} (source_sha256, name, record_no, created_at) "
        f"PARTITION BY RANGE COLUMNS(created_at) {partition_definitions(_first_days())}"
    )


def _align_created_at_sqlite() -> None:
    first_parse = (
        "(SELECT o.created_at FROM log_objects o "
        "WHERE o.source_sha256 = logs.source_sha256 AND o.name = logs.name)"
    )
    op.execute(
        f"UPDATE logs SET created_at = {first_parse} WHERE created_at <> {first_parse}"  # noqa: S608
    )


def _first_days() -> list[date]:
    """Returns the days to partition: the oldest row's (at most a year back) to a week ahead."""
    today = datetime.now(UTC).date()
    oldest = op.get_bind().execute(sa.text("SELECT MIN(created_at) FROM logs")).scalar_one()
    first = (
        today
        if oldest is None
        else max(oldest.date(), today - timedelta(days=OLDEST_DAY_PARTITION))
    )
    return days_between(min(first, today), today + timedelta(days=DAYS_AHEAD))


def downgrade() -> None:
    shared = op.get_bind().execute(
        sa.text(
            "SELECT COUNT(*) FROM (SELECT source_sha256, name, record_no FROM logs "
            "GROUP BY source_sha256, name, record_no HAVING COUNT(*) > 1) AS shared"
        )
    )
    count = shared.scalar_one()
    if count:
        raise RuntimeError(
            f"cannot downgrade below 0028: {count} records of logs are stored more than once "
            "(with different created_at), which the old key forbids; delete the copies first"
        )
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("logs") as batch:
            batch.create_unique_constraint(OLD_KEY, ["source_sha256", "name", "record_no"])
            batch.drop_constraint(NEW_KEY, type_="unique")
    else:
        op.execute("ALTER TABLE logs REMOVE PARTITIONING")
        op.execute(
            f"ALTER TABLE logs DROP PRIMARY KEY, ADD PRIMARY KEY (id), DROP INDEX {NEW_KEY}, "
            f"ADD UNIQUE KEY {OLD_KEY} (source_sha256, name, record_no)"
        )
    with op.batch_alter_table("log_objects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_log_objects_created_at"))
    op.drop_table("log_objects")
