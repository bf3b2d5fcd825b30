"""notifier: alert history, notification attempts, delivery plan and throttle windows

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import rbr_runtime.db.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("alert_id", sa.String(length=64), nullable=False),
        sa.Column("dedupe_key", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column(
            "state",
            sa.String(length=16),
            nullable=False,
            comment="firing, resolved or acknowledged",
        ),
        sa.Column("bucket", sa.String(length=128), nullable=True),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column(
            "detail",
            sa.Text()
            .with_variant(mysql.MEDIUMTEXT(), "mariadb")
            .with_variant(mysql.MEDIUMTEXT(), "mysql"),
            nullable=False,
            comment="up to 20,000 characters",
        ),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("fired_at", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.Column(
            "last_seen_at",
            rbr_runtime.db.types.UtcDateTime(),
            nullable=True,
            comment="last firing event (NULL: fired_at)",
        ),
        sa.Column("repeats", sa.Integer(), server_default="0", nullable=False),
        sa.Column("resolved_at", rbr_runtime.db.types.UtcDateTime(), nullable=True),
        sa.Column(
            "resolved_by", sa.String(length=32), nullable=True, comment="event, or superseded"
        ),
        sa.Column("acknowledged_at", rbr_runtime.db.types.UtcDateTime(), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=255), nullable=True),
        sa.Column("last_event_id", sa.String(length=64), nullable=False),
        sa.Column("updated_at", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("alert_id", name=op.f("uq_alerts_alert_id")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_dedupe_key"), ["dedupe_key"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_alerts_state_fired_at"), ["state", "fired_at"], unique=False
        )

    op.create_table(
        "notifications",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("alert_id", sa.String(length=64), nullable=True),
        sa.Column("dedupe_key", sa.String(length=255), nullable=True),
        sa.Column("channel", sa.String(length=128), nullable=False),
        sa.Column(
            "kind", sa.String(length=16), nullable=False, comment="trigger, resolve, digest or test"
        ),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.String(length=24),
            nullable=False,
            comment="sent, retrying, failed or rejected",
        ),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column(
            "error",
            sa.String(length=1000),
            nullable=True,
            comment="short, sanitised: no URL, no key",
        ),
        sa.Column("created_at", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notifications_alert_id"), ["alert_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_notifications_channel_created_at"),
            ["channel", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_notifications_created_at"), ["created_at"], unique=False
        )

    op.create_table(
        "notifier_deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("alert_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False, comment="trigger or resolve"),
        sa.Column(
            "state",
            sa.String(length=16),
            nullable=False,
            comment="pending, sent, throttled, digested, failed, rejected or skipped",
        ),
        sa.Column(
            "window_start",
            rbr_runtime.db.types.UtcDateTime(),
            nullable=True,
            comment="throttle window counted in",
        ),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "detail", sa.String(length=500), nullable=True, comment="why it ended so, sanitised"
        ),
        sa.Column("created_at", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.Column("updated_at", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifier_deliveries")),
        sa.UniqueConstraint(
            "alert_id",
            "channel",
            "kind",
            name=op.f("uq_notifier_deliveries_alert_id_channel_kind"),
        ),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("notifier_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notifier_deliveries_channel_state_window_start"),
            ["channel", "state", "window_start"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_notifier_deliveries_state"), ["state"], unique=False)

    op.create_table(
        "notifier_windows",
        sa.Column("channel", sa.String(length=128), nullable=False),
        sa.Column("window_start", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.Column("window_end", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.Column("sent", sa.Integer(), server_default="0", nullable=False),
        sa.Column("folded", sa.Integer(), server_default="0", nullable=False),
        sa.Column("digest_claimed_by", sa.String(length=255), nullable=True),
        sa.Column("digest_claimed_at", rbr_runtime.db.types.UtcDateTime(), nullable=True),
        sa.Column("digests_sent", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("channel", "window_start", name=op.f("pk_notifier_windows")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("notifier_windows", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notifier_windows_window_end"), ["window_end"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("notifier_windows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifier_windows_window_end"))
    op.drop_table("notifier_windows")
    with op.batch_alter_table("notifier_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifier_deliveries_state"))
        batch_op.drop_index(batch_op.f("ix_notifier_deliveries_channel_state_window_start"))
    op.drop_table("notifier_deliveries")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_created_at"))
        batch_op.drop_index(batch_op.f("ix_notifications_channel_created_at"))
        batch_op.drop_index(batch_op.f("ix_notifications_alert_id"))
    op.drop_table("notifications")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_state_fired_at"))
        batch_op.drop_index(batch_op.f("ix_alerts_dedupe_key"))
    op.drop_table("alerts")
