"""task runs: scheduled tasks claimed once across replicas

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import rbr_runtime.db.types

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "task_runs",
        sa.Column("task", sa.String(length=64), nullable=False),
        sa.Column(
            "slot", sa.String(length=64), nullable=False, comment="e.g. the day, for a daily task"
        ),
        sa.Column("claimed_by", sa.String(length=255), nullable=False),
        sa.Column("claimed_at", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.Column("finished_at", rbr_runtime.db.types.UtcDateTime(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("task", "slot", name=op.f("pk_task_runs")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


def downgrade() -> None:
    op.drop_table("task_runs")
