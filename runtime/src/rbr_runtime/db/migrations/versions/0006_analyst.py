"""analyst: log_analysis (seed columns plus window and findings), backlog, alert state, outbox

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
        sa.Column(
            "fallback_reason", sa.String(length=500), nullable=True, comment="why rules, not claude"
        ),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.Column("iocs", sa.JSON(), nullable=False),
        sa.Column("recommended_actions", sa.JSON(), nullable=False),
        sa.Column("log_rows", sa.Integer(), nullable=False),
        sa.Column(
            "stages", sa.Integer(), server_default="0", nullable=False, comment="model requests"
        ),
        sa.Column(
            "digest_tokens", sa.Integer(), server_default="0", nullable=False, comment="estimated"
        ),
        sa.Column("input_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("output_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_analysis")),
        sa.UniqueConstraint(
            "name",
            "window_start",
            "window_end",
            name=op.f("uq_log_analysis_name_window_start_window_end"),
        ),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("log_analysis", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_log_analysis_created_at"), ["created_at"], unique=False
        )

    op.create_table(
        "analysis_backlog",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("window_start", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.Column("ip_address", sa.String(length=255), nullable=False),
        sa.Column("first_noted_at", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(length=255), nullable=True),
        sa.Column(
            "claimed_until",
            rbr_runtime.db.types.UtcDateTime(),
            nullable=True,
            comment="lease of the analysing replica",
        ),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("name", "window_start", name=op.f("pk_analysis_backlog")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )

    op.create_table(
        "analysis_alert_state",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("finding_key", sa.String(length=64), nullable=False),
        sa.Column("alert_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False, comment="firing or resolved"),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("opened_window_start", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.Column("last_window_start", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.Column("updated_at", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", "finding_key", name=op.f("pk_analysis_alert_state")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("analysis_alert_state", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_analysis_alert_state_state_last_window_start"),
            ["state", "last_window_start"],
            unique=False,
        )

    op.create_table(
        "analyst_outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("message_key", sa.String(length=255), nullable=False),
        sa.Column(
            "value",
            sa.LargeBinary()
            .with_variant(mysql.LONGBLOB(), "mariadb")
            .with_variant(mysql.LONGBLOB(), "mysql"),
            nullable=False,
        ),
        sa.Column("created_at", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analyst_outbox")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


def downgrade() -> None:
    op.drop_table("analyst_outbox")
    with op.batch_alter_table("analysis_alert_state", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_analysis_alert_state_state_last_window_start"))
    op.drop_table("analysis_alert_state")
    op.drop_table("analysis_backlog")
    with op.batch_alter_table("log_analysis", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_log_analysis_created_at"))
    op.drop_table("log_analysis")
