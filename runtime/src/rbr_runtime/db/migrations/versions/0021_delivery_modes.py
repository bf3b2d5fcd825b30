"""delivery modes per bucket, S3 drop locations, upload freshness

* registrar: `buckets.delivery_mode` (pull, agent or s3-drop; existing buckets are pull, as
  they were polled and pulled until now) and `delivery_mode_pinned` (an operator chose it);
  `drop_sources`, the instance folders found in drop locations and the bucket each is
  linked to.
* log-extractor: `drop_file_ledger` (a bucket's drop files by name, across its instance
  folders) and, in `extract_cursors`, the newest upload seen in the bucket's S3 sources and
  when it was listed (the poller judges s3-drop buckets by them).
* poller: `poller_state.alert_basis`, what an open unresponsive alert judged (polls or
  uploads), so an alert is closed when the bucket's delivery mode changes.

Only additions: existing rows keep their data.

Revision ID: 0021
Revises: 0023
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import rbr_runtime.db.types

revision: str = "0021"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UtcDateTime = rbr_runtime.db.types.UtcDateTime
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("buckets") as batch:
        batch.add_column(
            sa.Column(
                "delivery_mode",
                sa.String(length=16),
                server_default="pull",
                nullable=False,
                comment="pull, agent or s3-drop",
            )
        )
        batch.add_column(
            sa.Column(
                "delivery_mode_pinned",
                sa.Boolean(),
                server_default="0",
                nullable=False,
                comment="set by an operator: never inferred again",
            )
        )
    op.create_table(
        "drop_sources",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("uri_sha256", sa.String(length=64), nullable=False, comment="of the folder URI"),
        sa.Column(
            "location", sa.String(length=1100), nullable=False, comment="s3://BUCKET/PREFIX/"
        ),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("folder", sa.String(length=255), nullable=False),
        sa.Column("bucket_id", sa.String(length=36), nullable=True, comment="NULL: unclaimed"),
        sa.Column(
            "linked_by",
            sa.String(length=16),
            nullable=True,
            comment="name, identity, restart, operator",
        ),
        sa.Column("linked_at", UtcDateTime(), nullable=True),
        sa.Column("objects", sa.Integer(), server_default="0", nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("newest_upload_at", UtcDateTime(), nullable=True),
        sa.Column(
            "starts", sa.JSON(), nullable=False, comment="[[instance name, registered name]]"
        ),
        sa.Column("first_seen_at", UtcDateTime(), nullable=False),
        sa.Column("last_seen_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drop_sources")),
        sa.UniqueConstraint("uri_sha256", name=op.f("uq_drop_sources_uri_sha256")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    op.create_index(op.f("ix_drop_sources_bucket_id"), "drop_sources", ["bucket_id"])
    op.create_table(
        "drop_file_ledger",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False, comment="of the file name"),
        sa.Column("file_name", sa.String(length=1024), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False, comment="bytes copied so far"),
        sa.Column(
            "source_sha256", sa.String(length=64), nullable=False, comment="sha256 of those bytes"
        ),
        sa.Column(
            "reference_uri", sa.String(length=2048), nullable=False, comment="source holding them"
        ),
        sa.Column("reference_etag", sa.String(length=128), nullable=True),
        sa.Column(
            "target_key", sa.String(length=1024), nullable=True, comment="the last raw object made"
        ),
        sa.Column("copied_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drop_file_ledger")),
        sa.UniqueConstraint(
            "name", "file_sha256", name=op.f("uq_drop_file_ledger_name_file_sha256")
        ),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("extract_cursors") as batch:
        batch.add_column(
            sa.Column(
                "last_upload_at",
                UtcDateTime(),
                nullable=True,
                comment="newest LastModified in the bucket's S3 sources, as last listed",
            )
        )
        batch.add_column(
            sa.Column(
                "uploads_checked_at", UtcDateTime(), nullable=True, comment="that listing's time"
            )
        )
        batch.add_column(sa.Column("uploads_first_checked_at", UtcDateTime(), nullable=True))
    with op.batch_alter_table("poller_state") as batch:
        batch.add_column(
            sa.Column(
                "alert_basis",
                sa.String(length=16),
                nullable=True,
                comment="what the open alert judged: polls (NULL) or uploads",
            )
        )


def downgrade() -> None:
    # Each step checks what is there: on MySQL DDL is not transactional, so a downgrade that
    # failed further down (e.g. 0012 refusing) leaves these steps done without the version
    # moving, and the next attempt must pass over them.
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    _drop_columns(inspector, "poller_state", ["alert_basis"])
    _drop_columns(
        inspector,
        "extract_cursors",
        ["uploads_first_checked_at", "uploads_checked_at", "last_upload_at"],
    )
    if "drop_file_ledger" in tables:
        op.drop_table("drop_file_ledger")
    if "drop_sources" in tables:
        op.drop_index(op.f("ix_drop_sources_bucket_id"), table_name="drop_sources")
        op.drop_table("drop_sources")
    _drop_columns(inspector, "buckets", ["delivery_mode_pinned", "delivery_mode"])


def _drop_columns(inspector: sa.Inspector, table: str, columns: list[str]) -> None:
    present = {column["name"] for column in inspector.get_columns(table)}
    wanted = [column for column in columns if column in present]
    if not wanted:
        return
    with op.batch_alter_table(table) as batch:
        for column in wanted:
            batch.drop_column(column)
