"""parser: the logs table (seed columns plus parsed fields)

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import rbr_runtime.db.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "logs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("ip_address", sa.String(length=255), nullable=False),
        sa.Column(
            "log",
            sa.Text()
            .with_variant(mysql.MEDIUMTEXT(), "mariadb")
            .with_variant(mysql.MEDIUMTEXT(), "mysql"),
            nullable=False,
            comment="the raw record, as received (capped)",
        ),
        sa.Column(
            "log_size",
            sa.Integer(),
            nullable=False,
            comment="the record's true size in bytes",
        ),
        sa.Column(
            "created_at",
            rbr_runtime.db.types.UtcDateTime(),
            server_default=rbr_runtime.db.types.UtcNow(),
            nullable=False,
        ),
        sa.Column(
            "log_format",
            sa.String(length=16),
            nullable=False,
            comment="rustbucket, cowrie, sshd, ...",
        ),
        sa.Column(
            "event_type",
            sa.String(length=64),
            nullable=False,
            comment="normalised; unparsed if unknown",
        ),
        sa.Column(
            "native_type",
            sa.String(length=64),
            nullable=True,
            comment="Cowrie eventid, tracing target",
        ),
        sa.Column("event_time", rbr_runtime.db.types.UtcDateTime(), nullable=True),
        sa.Column("level", sa.String(length=16), nullable=True),
        sa.Column("protocol", sa.String(length=16), nullable=True),
        sa.Column("source_ip", sa.String(length=45), nullable=True),
        sa.Column("source_port", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=255), nullable=True),
        sa.Column("password", sa.String(length=255), nullable=True),
        sa.Column("command", sa.Text(), nullable=True),
        sa.Column("url", sa.String(length=2048), nullable=True),
        sa.Column("http_method", sa.String(length=16), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("file_sha256", sa.String(length=64), nullable=True),
        sa.Column("session", sa.String(length=64), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column(
            "source_key", sa.String(length=1024), nullable=False, comment="S3 key of the raw object"
        ),
        sa.Column("source_sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "record_no",
            sa.Integer(),
            nullable=False,
            comment="position in the raw object, from 0",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_logs")),
        sa.UniqueConstraint(
            "source_sha256", "record_no", name=op.f("uq_logs_source_sha256_record_no")
        ),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("logs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_logs_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_logs_event_type"), ["event_type"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_logs_name_created_at"), ["name", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_logs_source_ip"), ["source_ip"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("logs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_logs_source_ip"))
        batch_op.drop_index(batch_op.f("ix_logs_name_created_at"))
        batch_op.drop_index(batch_op.f("ix_logs_event_type"))
        batch_op.drop_index(batch_op.f("ix_logs_created_at"))
    op.drop_table("logs")
