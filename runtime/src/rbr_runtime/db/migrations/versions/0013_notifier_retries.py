"""notifier: a delivery the channel did not take waits (state waiting) for the retry sweeper,
with the alerts message it came from kept to dead-letter if its retry schedule runs out

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import rbr_runtime.db.types

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATES = "pending, sending, sent, throttled, digested, failed, rejected or skipped"
NEW_STATES = "pending, sending, waiting, sent, throttled, digested, failed, rejected or skipped"


def _blob() -> sa.types.TypeEngine[bytes]:
    return (
        sa.LargeBinary()
        .with_variant(mysql.LONGBLOB(), "mariadb")
        .with_variant(mysql.LONGBLOB(), "mysql")
    )


def upgrade() -> None:
    op.create_table(
        "notifier_delivery_events",
        sa.Column(
            "delivery_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("kafka_partition", sa.Integer(), nullable=False),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=False),
        sa.Column("message_key", _blob(), nullable=True),
        sa.Column("value", _blob(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=False, comment="[[name, base64 value], ...]"),
        sa.Column("created_at", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("delivery_id", name=op.f("pk_notifier_delivery_events")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("notifier_deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "next_attempt_at",
                rbr_runtime.db.types.UtcDateTime(),
                nullable=True,
                comment="when the retry sweeper tries it next (NULL: not in the retry schedule)",
            )
        )
        batch_op.add_column(
            sa.Column(
                "waiting_since",
                rbr_runtime.db.types.UtcDateTime(),
                nullable=True,
                comment="when its retry schedule began (its first failed try or deferral)",
            )
        )
        batch_op.alter_column(
            "state",
            existing_type=sa.String(length=16),
            existing_nullable=False,
            comment=NEW_STATES,
            existing_comment=OLD_STATES,
        )
        batch_op.drop_index(batch_op.f("ix_notifier_deliveries_state"))
        batch_op.create_index(
            batch_op.f("ix_notifier_deliveries_state_next_attempt_at"),
            ["state", "next_attempt_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("notifier_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifier_deliveries_state_next_attempt_at"))
        batch_op.create_index(batch_op.f("ix_notifier_deliveries_state"), ["state"], unique=False)
        batch_op.alter_column(
            "state",
            existing_type=sa.String(length=16),
            existing_nullable=False,
            comment=OLD_STATES,
            existing_comment=NEW_STATES,
        )
        batch_op.drop_column("waiting_since")
        batch_op.drop_column("next_attempt_at")
    op.drop_table("notifier_delivery_events")
