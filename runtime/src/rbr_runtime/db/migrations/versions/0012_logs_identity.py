"""parser: a logs row is identified by (object sha256, bucket name, record number)

The unique key was (source_sha256, record_no): when two buckets sent byte-identical objects,
the first one parsed got the rows and the other none (INSERT IGNORE skipped them all). The
key now includes the bucket's name, so each bucket keeps its rows, while one bucket's content
stored twice (the same file uploaded again under another key) still adds no rows.

Existing rows satisfy the new key (it is looser than the old one), so no row changes. The new
index is created before the old one is dropped: uniqueness is enforced throughout (on
MariaDB/MySQL both are online index operations, no table copy; SQLite copies the table).
Rows lost before this migration come back with a replay of `logs.extracted` (see the parser
README): the replayed objects of the bucket that got none insert theirs now.

The logs.parsed event id now includes the bucket too; the comment of
parsed_objects.event_id says so.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KEY = "uq_logs_source_sha256_record_no"
NEW_KEY = "uq_logs_source_sha256_name_record_no"
OLD_EVENT_ID_COMMENT = "id of the object's logs.parsed event (object id + sha256)"
NEW_EVENT_ID_COMMENT = "id of the object's logs.parsed event (bucket + object id + sha256)"


def upgrade() -> None:
    with op.batch_alter_table("logs") as batch:
        batch.create_unique_constraint(NEW_KEY, ["source_sha256", "name", "record_no"])
        batch.drop_constraint(OLD_KEY, type_="unique")
    _comment_event_id(NEW_EVENT_ID_COMMENT, OLD_EVENT_ID_COMMENT)


def downgrade() -> None:
    shared = op.get_bind().execute(
        sa.text(
            "SELECT COUNT(*) FROM (SELECT source_sha256, record_no FROM logs "
            "GROUP BY source_sha256, record_no HAVING COUNT(*) > 1) AS shared"
        )
    )
    count = shared.scalar_one()
    if count:
        raise RuntimeError(
            f"cannot downgrade below 0012: {count} records of logs are held by more than one "
            "bucket (identical objects), which the old key (source_sha256, record_no) forbids; "
            "delete one bucket's copies first"
        )
    with op.batch_alter_table("logs") as batch:
        batch.create_unique_constraint(OLD_KEY, ["source_sha256", "record_no"])
        batch.drop_constraint(NEW_KEY, type_="unique")
    _comment_event_id(OLD_EVENT_ID_COMMENT, NEW_EVENT_ID_COMMENT)


def _comment_event_id(comment: str, existing: str) -> None:
    """Sets the comment of parsed_objects.event_id (comments exist on MySQL only)."""
    if op.get_bind().dialect.name == "sqlite":
        return
    op.alter_column(
        "parsed_objects",
        "event_id",
        existing_type=sa.String(length=36),
        existing_nullable=False,
        comment=comment,
        existing_comment=existing,
    )
