"""analyst: window tallies, so a window's digest reads counts instead of its rows

Three new tables, nothing existing changes: `window_objects` (each parsed object folded into
its window's tallies, with its row count, bytes and event time range), `window_values` (how
often each distinct value occurs in a window, per facet) and `bucket_source_ips` (when each
bucket first saw each source IP). The last is filled from `logs` here; windows with rows not
folded (those parsed before the upgrade) are digested from their rows, as before.

Revision ID: 0029
Revises: 0028
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import rbr_runtime.db.types

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The collation of `logs`: values group and compare in the tallies as they do in the rows.
CHARSET = "utf8mb4"
COLLATION = "utf8mb4_bin"


def _when(name: str, *, nullable: bool = False, comment: str | None = None) -> sa.Column[object]:
    return sa.Column(name, rbr_runtime.db.types.UtcDateTime(), nullable=nullable, comment=comment)


def upgrade() -> None:
    op.create_table(
        "window_objects",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("source_sha256", sa.String(64), nullable=False),
        _when("created_at", comment="the rows' ingestion moment"),
        _when("window_start"),
        _when("window_end"),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("byte_count", sa.BigInteger(), nullable=False, comment="sum of logs.log_size"),
        _when("first_event_at", nullable=True),
        _when("last_event_at", nullable=True),
        sa.PrimaryKeyConstraint(
            "source_sha256", "name", "created_at", name=op.f("pk_window_objects")
        ),
        mysql_charset=CHARSET,
        mysql_collate=COLLATION,
    )
    with op.batch_alter_table("window_objects", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_window_objects_name_window_start_window_end"),
            ["name", "window_start", "window_end"],
        )
    op.create_table(
        "window_values",
        sa.Column("name", sa.String(255), nullable=False),
        _when("window_start"),
        _when("window_end"),
        sa.Column(
            "facet", sa.String(16), nullable=False, comment="source_ip, username, command, ..."
        ),
        sa.Column("value_sha256", sa.String(64), nullable=False, comment="of the exact value(s)"),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column(
            "value2",
            sa.String(255),
            nullable=True,
            comment="logins: username; downloads: sha256",
        ),
        sa.Column("value3", sa.String(255), nullable=True, comment="logins: password"),
        sa.Column(
            "rule", sa.String(64), nullable=True, comment="commands: the attack rule matched"
        ),
        sa.Column("hits", sa.BigInteger(), nullable=False),
        sa.Column(
            "first_id", sa.BigInteger(), nullable=False, comment="lowest logs.id with the value"
        ),
        sa.PrimaryKeyConstraint(
            "name",
            "window_start",
            "window_end",
            "facet",
            "value_sha256",
            name=op.f("pk_window_values"),
        ),
        mysql_charset=CHARSET,
        mysql_collate=COLLATION,
    )
    op.create_table(
        "bucket_source_ips",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("source_ip", sa.String(45), nullable=False),
        _when("first_seen_at", comment="logs.created_at"),
        sa.PrimaryKeyConstraint("name", "source_ip", name=op.f("pk_bucket_source_ips")),
        mysql_charset=CHARSET,
        mysql_collate=COLLATION,
    )
    op.execute(
        "INSERT INTO bucket_source_ips (name, source_ip, first_seen_at) "
        "SELECT name, source_ip, MIN(created_at) FROM logs "
        "WHERE source_ip IS NOT NULL GROUP BY name, source_ip"
    )


def downgrade() -> None:
    op.drop_table("bucket_source_ips")
    op.drop_table("window_values")
    with op.batch_alter_table("window_objects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_window_objects_name_window_start_window_end"))
    op.drop_table("window_objects")
