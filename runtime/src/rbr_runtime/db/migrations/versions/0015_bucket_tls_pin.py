"""registrar: buckets.tls_cert_sha256, the certificate pinned at registration

A bucket agent serves HTTPS with its own self-signed certificate and registers its SHA-256;
the poller and the log-extractor then accept exactly that certificate. NULL (every existing
bucket) keeps CA verification.

Revision ID: 0015
Revises: 0013
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("buckets") as batch:
        batch.add_column(
            sa.Column(
                "tls_cert_sha256",
                sa.String(length=64),
                nullable=True,
                comment="pinned certificate (sha256 of DER, hex); NULL: verified by CA",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("buckets") as batch:
        batch.drop_column("tls_cert_sha256")
