"""registrar: buckets and the registration outbox

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import rbr_runtime.db.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "buckets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("ip_address", sa.String(length=45), nullable=False),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("operating_system", sa.String(length=255), nullable=True),
        sa.Column("cpu_usage", sa.String(length=255), nullable=True),
        sa.Column("memory_usage", sa.String(length=255), nullable=True),
        sa.Column("disk_space", sa.String(length=255), nullable=True),
        sa.Column("uptime", sa.String(length=255), nullable=True),
        sa.Column("connections", sa.String(length=255), nullable=True),
        sa.Column("s3_bucket_name", sa.String(length=63), nullable=True),
        sa.Column("s3_region", sa.String(length=64), nullable=True),
        sa.Column("s3_prefix", sa.String(length=1024), nullable=True),
        sa.Column(
            "token_hash", sa.String(length=64), nullable=False, comment="HMAC-SHA256 of the token"
        ),
        sa.Column(
            "token_ciphertext", sa.Text(), nullable=False, comment="Fernet, key RBR_SECRET_KEY"
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("registered_at", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.Column("updated_at", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.Column("approved_at", rbr_runtime.db.types.UtcDateTime(), nullable=True),
        sa.Column(
            "last_seen",
            rbr_runtime.db.types.UtcDateTime(),
            nullable=True,
            comment="last successful poll",
        ),
        sa.Column("last_status_at", rbr_runtime.db.types.UtcDateTime(), nullable=True),
        sa.Column("last_reachable", sa.Boolean(), nullable=True),
        sa.Column("last_error_class", sa.String(length=32), nullable=True),
        sa.Column("last_latency_ms", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_buckets")),
        sa.UniqueConstraint("name", name=op.f("uq_buckets_name")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("buckets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_buckets_state"), ["state"], unique=False)

    op.create_table(
        "registrar_outbox",
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
            nullable=True,
            comment="NULL is a tombstone",
        ),
        sa.Column("created_at", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registrar_outbox")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


def downgrade() -> None:
    op.drop_table("registrar_outbox")
    with op.batch_alter_table("buckets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_buckets_state"))
    op.drop_table("buckets")
