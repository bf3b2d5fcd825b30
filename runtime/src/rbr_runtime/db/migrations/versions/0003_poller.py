"""poller: per-bucket poll and health state

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import rbr_runtime.db.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "poller_state",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("last_poll_slot", sa.BigInteger(), server_default="-1", nullable=False),
        sa.Column("last_poll_at", rbr_runtime.db.types.UtcDateTime(), nullable=True),
        sa.Column("last_success_at", rbr_runtime.db.types.UtcDateTime(), nullable=True),
        sa.Column("first_seen_at", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error_class", sa.String(length=32), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("alert_open", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("alert_id", sa.String(length=64), nullable=True),
        sa.Column("alert_opened_at", rbr_runtime.db.types.UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_poller_state")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


def downgrade() -> None:
    op.drop_table("poller_state")
