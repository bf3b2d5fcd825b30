"""runtime: one outbox table for every service (registrar_outbox and analyst_outbox merged)

The rows waiting in `registrar_outbox` and `analyst_outbox` move to `outbox`, each service's
in its old id order, under its name in `service`. Replicas still running the code before
this revision lose their outbox table: upgrade the registrar and the analyst together.

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import rbr_runtime.db.types

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICES = ("registrar", "analyst")
"""Whose outbox tables are merged, in the order their rows are copied."""
FIELDS = ("topic", "message_key", "value", "created_at")


def _table(name: str, *extra: str) -> sa.TableClause:
    return sa.table(name, *(sa.column(field) for field in (*extra, *FIELDS)))


def _id_column() -> sa.Column[int]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        autoincrement=True,
        nullable=False,
    )


def _value_column(*, nullable: bool) -> sa.Column[bytes]:
    return sa.Column(
        "value",
        sa.LargeBinary()
        .with_variant(mysql.LONGBLOB(), "mariadb")
        .with_variant(mysql.LONGBLOB(), "mysql"),
        nullable=nullable,
        comment="NULL is a tombstone" if nullable else None,
    )


def upgrade() -> None:
    op.create_table(
        "outbox",
        _id_column(),
        sa.Column(
            "service",
            sa.String(length=64),
            nullable=False,
            comment="whose outbox: registrar, analyst",
        ),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("message_key", sa.String(length=255), nullable=False),
        _value_column(nullable=True),
        sa.Column("created_at", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_service_id"), ["service", "id"], unique=False)
    merged = _table("outbox", "service")
    for service in SERVICES:
        old = _table(f"{service}_outbox", "id")
        # New ids in the old order: each service's messages keep their sequence.
        rows = sa.select(sa.literal(service), *(old.c[f] for f in FIELDS)).order_by(old.c.id)
        op.execute(merged.insert().from_select(["service", *FIELDS], rows))
        op.drop_table(f"{service}_outbox")


def downgrade() -> None:
    merged = _table("outbox", "id", "service")
    for service in SERVICES:
        op.create_table(
            f"{service}_outbox",
            _id_column(),
            sa.Column("topic", sa.String(length=255), nullable=False),
            sa.Column("message_key", sa.String(length=255), nullable=False),
            # The analyst's never held tombstones.
            _value_column(nullable=service == "registrar"),
            sa.Column("created_at", rbr_runtime.db.types.UtcDateTime(), nullable=False),
            sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{service}_outbox")),
            mysql_charset="utf8mb4",
            mysql_collate="utf8mb4_bin",
        )
        rows = (
            sa.select(*(merged.c[f] for f in FIELDS))
            .where(merged.c.service == service)
            .order_by(merged.c.id)
        )
        op.execute(_table(f"{service}_outbox").insert().from_select(list(FIELDS), rows))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_service_id"))
    op.drop_table("outbox")
