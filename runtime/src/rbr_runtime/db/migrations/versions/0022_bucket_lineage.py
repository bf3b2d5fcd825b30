"""registrar: registrations that replace a silent bucket, and names merged into a bucket

`buckets.replaces_id` marks a pending registration that evidently replaces a silent bucket
(same address and operating system: the real rustbucket registers under a new name at every
start); the index on (ip_address, operating_system) finds a host's registrations.
`bucket_aliases` keeps the names of registrations an operator merged into a bucket, so they
still designate it. Existing rows are kept: no bucket replaces another, no alias exists.

Revision ID: 0022
Revises: 0015
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import rbr_runtime.db.types

revision: str = "0022"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("buckets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "replaces_id",
                sa.String(length=36),
                nullable=True,
                comment="the silent bucket this pending registration evidently replaces",
            )
        )
        batch_op.create_index(
            batch_op.f("ix_buckets_ip_address_operating_system"),
            ["ip_address", "operating_system"],
            unique=False,
        )
    op.create_table(
        "bucket_aliases",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("bucket_id", sa.String(length=36), nullable=False, comment="the bucket it names"),
        sa.Column(
            "merged_id",
            sa.String(length=36),
            nullable=False,
            comment="the merged registration's own id",
        ),
        sa.Column(
            "registered_at",
            rbr_runtime.db.types.UtcDateTime(),
            nullable=False,
            comment="when the merged registration was made",
        ),
        sa.Column("merged_at", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_bucket_aliases")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("bucket_aliases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_bucket_aliases_bucket_id"), ["bucket_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("bucket_aliases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bucket_aliases_bucket_id"))
    op.drop_table("bucket_aliases")
    with op.batch_alter_table("buckets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_buckets_ip_address_operating_system"))
        batch_op.drop_column("replaces_id")
