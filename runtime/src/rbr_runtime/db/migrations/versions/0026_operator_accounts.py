"""registrar: operator accounts, console sessions and failed logins

Three new tables, nothing existing changes: `operator_users` (named accounts with a role and an
argon2 password hash), `operator_sessions` (server-side console sessions, kept by the hash of
their cookie) and `login_failures` (what the login rate limit counts).

Revision ID: 0026
Revises: 0025
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import rbr_runtime.db.types

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str) -> sa.Column[object]:
    return sa.Column(name, rbr_runtime.db.types.UtcDateTime(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "operator_users",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False, comment="argon2id (PHC string)"),
        sa.Column("role", sa.String(16), nullable=False, comment="viewer, operator or admin"),
        sa.Column("disabled", sa.Boolean(), server_default="0", nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_users")),
        sa.UniqueConstraint("name", name=op.f("uq_operator_users_name")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    op.create_table(
        "operator_sessions",
        sa.Column(
            "id_sha256", sa.String(64), nullable=False, comment="sha256 of the cookie's value"
        ),
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        _when("created_at"),
        _when("expires_at"),
        sa.PrimaryKeyConstraint("id_sha256", name=op.f("pk_operator_sessions")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("operator_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_operator_sessions_user_name"), ["user_name"])
        batch_op.create_index(batch_op.f("ix_operator_sessions_expires_at"), ["expires_at"])
    op.create_table(
        "login_failures",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "key_sha256",
            sa.String(64),
            nullable=False,
            comment="sha256 of user name and address",
        ),
        _when("failed_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_login_failures_key_sha256_failed_at"), ["key_sha256", "failed_at"]
        )
        batch_op.create_index(batch_op.f("ix_login_failures_failed_at"), ["failed_at"])


def downgrade() -> None:
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_failures_failed_at"))
        batch_op.drop_index(batch_op.f("ix_login_failures_key_sha256_failed_at"))
    op.drop_table("login_failures")
    with op.batch_alter_table("operator_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operator_sessions_expires_at"))
        batch_op.drop_index(batch_op.f("ix_operator_sessions_user_name"))
    op.drop_table("operator_sessions")
    op.drop_table("operator_users")
