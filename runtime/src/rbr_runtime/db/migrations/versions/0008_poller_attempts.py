"""poller: which registration a state row belongs to, and when polls were attempted

`bucket_id` lets the poller tell a re-registered bucket (same name, new id) from the one
that was removed, so the new one starts with a clean health state. `last_attempt_at` and
`polling_since` say whether the bucket was actually being polled over the silence, so a
poller's own downtime is never taken for the bucket's.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import rbr_runtime.db.types

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("poller_state") as batch:
        batch.add_column(
            sa.Column(
                "bucket_id",
                sa.String(length=36),
                nullable=True,
                comment="the registration this state is of",
            )
        )
        batch.add_column(
            sa.Column(
                "last_attempt_at",
                rbr_runtime.db.types.UtcDateTime(),
                nullable=True,
                comment="latest recorded poll",
            )
        )
        batch.add_column(
            sa.Column(
                "polling_since",
                rbr_runtime.db.types.UtcDateTime(),
                nullable=True,
                comment="start of the current run of polls without a gap",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("poller_state") as batch:
        batch.drop_column("polling_since")
        batch.drop_column("last_attempt_at")
        batch.drop_column("bucket_id")
