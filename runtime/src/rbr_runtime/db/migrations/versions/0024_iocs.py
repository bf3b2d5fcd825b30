"""analyst: indicators of compromise (iocs), their sightings, ATT&CK techniques seen

Three new tables, nothing existing changes: `iocs` (one row per indicator fleet-wide),
`ioc_sightings` (which bucket sighted it in which window) and `technique_sightings` (ATT&CK
techniques per bucket). They fill from the analyses made after the upgrade.

Revision ID: 0024
Revises: 0027
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import rbr_runtime.db.types

revision: str = "0024"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, *, nullable: bool = False, comment: str | None = None) -> sa.Column[object]:
    return sa.Column(name, rbr_runtime.db.types.UtcDateTime(), nullable=nullable, comment=comment)


def upgrade() -> None:
    op.create_table(
        "iocs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "ioc_type", sa.String(16), nullable=False, comment="ip, domain, url, sha256, ..."
        ),
        sa.Column(
            "value", sa.String(2048), nullable=False, comment="normalised (refanged, lower-case)"
        ),
        sa.Column("key_sha256", sa.String(64), nullable=False, comment="sha256 of type:value"),
        _when("first_seen", comment="start of the first window"),
        _when("last_seen", comment="end of the latest window"),
        sa.Column("sightings", sa.Integer(), nullable=False, comment="(bucket, window) pairs"),
        sa.Column(
            "hits", sa.BigInteger(), nullable=False, comment="log records behind the sightings"
        ),
        sa.Column("bucket_count", sa.Integer(), nullable=False),
        sa.Column("buckets", sa.JSON(), nullable=False, comment="names, the first 50"),
        sa.Column("techniques", sa.JSON(), nullable=False, comment="ATT&CK technique ids"),
        sa.Column("roles", sa.JSON(), nullable=False, comment="what it did: login, download, ..."),
        sa.Column("confidence", sa.Integer(), nullable=False, comment="0-100"),
        sa.Column(
            "source", sa.String(16), nullable=False, comment="rules or claude (first sighting)"
        ),
        sa.Column(
            "source_rule", sa.String(64), nullable=False, comment="finding or role that found it"
        ),
        sa.Column("first_analysis_id", sa.BigInteger(), nullable=True),
        sa.Column("last_analysis_id", sa.BigInteger(), nullable=True),
        sa.Column("country", sa.String(2), nullable=True),
        sa.Column("as_org", sa.String(255), nullable=True),
        sa.Column(
            "geo_source",
            sa.String(64),
            nullable=True,
            comment="the enrichment database and date",
        ),
        sa.Column("attributes", sa.JSON(), nullable=False, comment="URL parts, ..."),
        _when("campaign_at", nullable=True, comment="last campaign alert about it"),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_iocs")),
        sa.UniqueConstraint("key_sha256", name=op.f("uq_iocs_key_sha256")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("iocs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_iocs_updated_at_id"), ["updated_at", "id"])
        batch_op.create_index(batch_op.f("ix_iocs_last_seen"), ["last_seen"])
    op.create_table(
        "ioc_sightings",
        sa.Column("ioc_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        _when("window_start"),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("ioc_id", "name", "window_start", name=op.f("pk_ioc_sightings")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("ioc_sightings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ioc_sightings_window_start"), ["window_start"])
    op.create_table(
        "technique_sightings",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("technique", sa.String(16), nullable=False),
        _when("first_seen"),
        _when("last_seen"),
        sa.Column("windows", sa.Integer(), nullable=False),
        sa.Column("findings", sa.Integer(), nullable=False, comment="findings that evidenced it"),
        sa.PrimaryKeyConstraint("name", "technique", name=op.f("pk_technique_sightings")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("technique_sightings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_technique_sightings_technique"), ["technique"])


def downgrade() -> None:
    with op.batch_alter_table("technique_sightings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_technique_sightings_technique"))
    op.drop_table("technique_sightings")
    with op.batch_alter_table("ioc_sightings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ioc_sightings_window_start"))
    op.drop_table("ioc_sightings")
    with op.batch_alter_table("iocs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_iocs_last_seen"))
        batch_op.drop_index(batch_op.f("ix_iocs_updated_at_id"))
    op.drop_table("iocs")
