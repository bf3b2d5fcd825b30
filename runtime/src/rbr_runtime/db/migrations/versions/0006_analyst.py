"""analyst: log_analysis (seed columns plus window and findings) and the backlog

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import rbr_runtime.db.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "log_analysis",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("ip_address", sa.String(length=255), nullable=False),
        sa.Column(
            "log_analysis",
            sa.Text()
            .with_variant(mysql.MEDIUMTEXT(), "mariadb")
            .with_variant(mysql.MEDIUMTEXT(), "mysql"),
            nullable=False,
            comment="the written analysis",
        ),
        sa.Column(
            "created_at",
            rbr_runtime.db.types.UtcDateTime(),
            server_default=rbr_runtime.db.types.UtcNow(),
            nullable=False,
        ),
        sa.Column("window_start", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.Column("window_end", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.Column("analyser", sa.String(length=16), nullable=False, comment="claude or rules"),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.Column("iocs", sa.JSON(), nullable=False),
        sa.Column("recommended_actions", sa.JSON(), nullable=False),
        sa.Column("log_rows", sa.Integer(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("output_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_analysis")),
        sa.UniqueConstraint(
            "name",
            "window_start",
            "window_end",
            name=op.f("uq_log_analysis_name_window_start_window_end"),
        ),
    )

    op.create_table(
        "analysis_backlog",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("window_start", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.Column("ip_address", sa.String(length=255), nullable=False),
        sa.Column("first_noted_at", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", "window_start", name=op.f("pk_analysis_backlog")),
    )


def downgrade() -> None:
    op.drop_table("analysis_backlog")
    op.drop_table("log_analysis")
