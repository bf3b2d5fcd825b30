"""log-extractor: the copy ledger remembers the sha256 of what it copied of each source

A source object that grows after it was copied (a log file uploaded again with more lines)
is recognised by comparing the first `size_bytes` bytes of its new version with this hash;
only the bytes after them are copied then.

Revision ID: 0009
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("s3_copy_ledger") as batch:
        batch.add_column(
            sa.Column(
                "source_sha256",
                sa.String(length=64),
                nullable=True,
                comment="sha256 of the source's first size_bytes bytes (NULL: before 0009)",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("s3_copy_ledger") as batch:
        batch.drop_column("source_sha256")
