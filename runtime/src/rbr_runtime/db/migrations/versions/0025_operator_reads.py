"""registrar: bucket status history, the audit log, indexes for the operator API's reads

Two new tables written by the registrar: `bucket_status_history` (every applied poll outcome,
kept for a retention period) and `audit_log` (every operator change). Indexes for log search
(`logs` by event type, source address and username, newest first; they replace the
single-column ones on event type and source address), analyses and alerts by bucket.

Revision ID: 0025
Revises: 0024
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import rbr_runtime.db.types

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _when(name: str) -> sa.Column[object]:
    return sa.Column(name, rbr_runtime.db.types.UtcDateTime(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "bucket_status_history",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("bucket_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        _when("polled_at"),
        sa.Column("reachable", sa.Boolean(), nullable=False),
        sa.Column("error_class", sa.String(32), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bucket_status_history")),
        sa.UniqueConstraint(
            "bucket_id", "polled_at", name=op.f("uq_bucket_status_history_bucket_id_polled_at")
        ),
    )
    with op.batch_alter_table("bucket_status_history", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_bucket_status_history_name_polled_at"), ["name", "polled_at"]
        )
        batch_op.create_index(batch_op.f("ix_bucket_status_history_polled_at"), ["polled_at"])
    op.create_table(
        "audit_log",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        _when("at"),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False, comment="viewer, operator or admin"),
        sa.Column(
            "action", sa.String(64), nullable=False, comment="e.g. bucket.approve, alert.ack"
        ),
        sa.Column(
            "target", sa.String(255), nullable=True, comment="bucket name, alert id, channel"
        ),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column(
            "outcome",
            sa.String(32),
            nullable=False,
            comment="e.g. updated, unchanged, not_found",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"])
        batch_op.create_index(batch_op.f("ix_audit_log_actor_at"), ["actor", "at"])
        batch_op.create_index(batch_op.f("ix_audit_log_action_at"), ["action", "at"])
    with op.batch_alter_table("logs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_logs_event_type_created_at"), ["event_type", "created_at"]
        )
        batch_op.create_index(
            batch_op.f("ix_logs_source_ip_created_at"), ["source_ip", "created_at"]
        )
        batch_op.create_index(batch_op.f("ix_logs_username_created_at"), ["username", "created_at"])
        batch_op.drop_index(batch_op.f("ix_logs_event_type"))
        batch_op.drop_index(batch_op.f("ix_logs_source_ip"))
    with op.batch_alter_table("log_analysis", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_log_analysis_name_id"), ["name", "id"])
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_bucket_id"), ["bucket", "id"])


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_bucket_id"))
    with op.batch_alter_table("log_analysis", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_log_analysis_name_id"))
    with op.batch_alter_table("logs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_logs_source_ip"), ["source_ip"])
        batch_op.create_index(batch_op.f("ix_logs_event_type"), ["event_type"])
        batch_op.drop_index(batch_op.f("ix_logs_username_created_at"))
        batch_op.drop_index(batch_op.f("ix_logs_source_ip_created_at"))
        batch_op.drop_index(batch_op.f("ix_logs_event_type_created_at"))
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_action_at"))
        batch_op.drop_index(batch_op.f("ix_audit_log_actor_at"))
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))
    op.drop_table("audit_log")
    with op.batch_alter_table("bucket_status_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bucket_status_history_polled_at"))
        batch_op.drop_index(batch_op.f("ix_bucket_status_history_name_polled_at"))
    op.drop_table("bucket_status_history")
