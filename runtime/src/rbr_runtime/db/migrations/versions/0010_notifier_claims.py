"""notifier: a delivery is claimed (state sending, by whom, since when) before it is sent;
alerts.resolved_by may be one-shot (a daily summary closed once delivered)

Revision ID: 0010
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import rbr_runtime.db.types

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATES = "pending, sent, throttled, digested, failed, rejected or skipped"
NEW_STATES = "pending, sending, sent, throttled, digested, failed, rejected or skipped"


OLD_RESOLVED_BY = "event, or superseded"
NEW_RESOLVED_BY = "event, superseded or one-shot"


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.alter_column(
            "resolved_by",
            existing_type=sa.String(length=32),
            existing_nullable=True,
            comment=NEW_RESOLVED_BY,
            existing_comment=OLD_RESOLVED_BY,
        )
    with op.batch_alter_table("notifier_deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "claimed_by",
                sa.String(length=255),
                nullable=True,
                comment="replica that is sending (or last sent) it",
            )
        )
        batch_op.add_column(
            sa.Column(
                "claimed_at",
                rbr_runtime.db.types.UtcDateTime(),
                nullable=True,
                comment="when the claim was taken or last renewed",
            )
        )
        batch_op.alter_column(
            "state",
            existing_type=sa.String(length=16),
            existing_nullable=False,
            comment=NEW_STATES,
            existing_comment=OLD_STATES,
        )


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.alter_column(
            "resolved_by",
            existing_type=sa.String(length=32),
            existing_nullable=True,
            comment=OLD_RESOLVED_BY,
            existing_comment=NEW_RESOLVED_BY,
        )
    with op.batch_alter_table("notifier_deliveries", schema=None) as batch_op:
        batch_op.alter_column(
            "state",
            existing_type=sa.String(length=16),
            existing_nullable=False,
            comment=OLD_STATES,
            existing_comment=NEW_STATES,
        )
        batch_op.drop_column("claimed_at")
        batch_op.drop_column("claimed_by")
