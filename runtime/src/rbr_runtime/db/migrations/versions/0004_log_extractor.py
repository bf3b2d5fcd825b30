"""log-extractor: pull cursors and the S3 copy ledger

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import rbr_runtime.db.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "extract_cursors",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column(
            "http_cursor",
            sa.String(length=255),
            nullable=True,
            comment="X-Log-Cursor last stored",
        ),
        sa.Column("last_extract_slot", sa.BigInteger(), server_default="-1", nullable=False),
        sa.Column("last_attempt_at", rbr_runtime.db.types.UtcDateTime(), nullable=True),
        sa.Column(
            "last_extracted_at",
            rbr_runtime.db.types.UtcDateTime(),
            nullable=True,
            comment="last successful cycle",
        ),
        sa.Column("consecutive_failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column(
            "pending_event",
            sa.Text(),
            nullable=True,
            comment="logs.extracted data stored with its cursor, until the broker confirmed it",
        ),
        sa.Column(
            "lease_owner", sa.String(length=255), nullable=True, comment="host:pid extracting now"
        ),
        sa.Column("lease_until", rbr_runtime.db.types.UtcDateTime(), nullable=True),
        sa.Column("updated_at", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_extract_cursors")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )

    op.create_table(
        "s3_copy_ledger",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("source_uri_sha256", sa.String(length=64), nullable=False),
        sa.Column("source_uri", sa.String(length=2048), nullable=False),
        sa.Column("source_etag", sa.String(length=128), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "target_key",
            sa.String(length=1024),
            nullable=True,
            comment="NULL: empty, nothing stored",
        ),
        sa.Column("copied_at", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_s3_copy_ledger")),
        sa.UniqueConstraint(
            "name", "source_uri_sha256", name=op.f("uq_s3_copy_ledger_name_source_uri_sha256")
        ),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


def downgrade() -> None:
    op.drop_table("s3_copy_ledger")
    op.drop_table("extract_cursors")
