"""parser: parsed_objects dropped (the done markers of objects whose offset was not committed)

The parser wrote a marker with an object's last rows and deleted it once the offset of its
logs.extracted message was committed, so that an object whose parse outlasted
max.poll.interval (the member evicted, the commit refused) was not parsed again. Handlers
now run off the poll thread and the member is no longer evicted: an object redelivered
before its commit is parsed again, inserts nothing and sends logs.parsed again with the same
id. The markers still in the table are of that kind and are dropped with it. Replicas still
running the code before this revision fail to write their markers: upgrade the parser with
the migration.

Revision ID: 0027
Revises: 0021
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import rbr_runtime.db.types

revision: str = "0027"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("parsed_objects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_parsed_objects_parsed_at"))
    op.drop_table("parsed_objects")


def downgrade() -> None:
    """Creates the table again, empty: an object parsed since then has no marker to need."""
    op.create_table(
        "parsed_objects",
        sa.Column(
            "event_id",
            sa.String(length=36),
            nullable=False,
            comment="id of the object's logs.parsed event (bucket + object id + sha256)",
        ),
        sa.Column("source_sha256", sa.String(length=64), nullable=False),
        sa.Column("parsed_event", sa.Text(), nullable=False, comment="logs.parsed data, as sent"),
        sa.Column("parsed_at", rbr_runtime.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_parsed_objects")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("parsed_objects", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_parsed_objects_parsed_at"), ["parsed_at"], unique=False
        )
