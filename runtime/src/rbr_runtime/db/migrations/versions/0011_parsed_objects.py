"""parser: parsed_objects, objects parsed whose logs.extracted offset may not be committed yet

A row is written in the transaction of an object's last rows and deleted once the offset of
its logs.extracted message is committed. A redelivery in between (the commit was refused
because the parse outlasted max.poll.interval and the member was evicted) sends the stored
logs.parsed again instead of parsing the object again.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import rbr_runtime.db.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "parsed_objects",
        sa.Column(
            "event_id",
            sa.String(length=36),
            nullable=False,
            comment="id of the object's logs.parsed event (object id + sha256)",
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


def downgrade() -> None:
    with op.batch_alter_table("parsed_objects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_parsed_objects_parsed_at"))
    op.drop_table("parsed_objects")
