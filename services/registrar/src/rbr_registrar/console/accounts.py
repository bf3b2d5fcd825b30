"""Named operator accounts with a role, their argon2 password hashes, and login checks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, RowMapping, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from rbr_registrar.operator.auth import Role
from rbr_runtime.db.tables import operator_sessions, operator_users

__all__ = ["AccountError", "Accounts", "OperatorUser", "Role"]

USER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024


@dataclass(frozen=True)
class OperatorUser:
    """An operator account as listed (never with its hash)."""

    name: str
    role: Role
    disabled: bool
    created_at: datetime


class AccountError(ValueError):
    """An account change that cannot be made; the message says why."""


def _user(row: RowMapping) -> OperatorUser:
    return OperatorUser(
        name=row["name"],
        role=Role(row["role"]),
        disabled=bool(row["disabled"]),
        created_at=row["created_at"],
    )


def check_new_password(password: str) -> None:
    """Raises AccountError when a new password is too short or too long."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")


class Accounts:
    """The `operator_users` table: add, list, disable, and check a login."""

    def __init__(self, engine: Engine, hasher: PasswordHasher | None = None) -> None:
        self.engine = engine
        self._hasher = hasher or PasswordHasher()
        # Verified when the name is unknown, so a login for a missing account costs the
        # same time as one for an existing account (no enumeration by timing).
        self._decoy_hash = self._hasher.hash("decoy password, never valid")

    def add(self, name: str, password: str, role: Role) -> OperatorUser:
        """Creates an account.

        Raises:
            AccountError: the name is malformed or taken, or the password too weak.
        """
        if not re.fullmatch(USER_NAME_PATTERN, name):
            raise AccountError(
                "a user name is 1-64 letters, digits, '.', '_', '@' or '-', "
                "starting with a letter or digit"
            )
        check_new_password(password)
        now = datetime.now(UTC)
        values = {
            "name": name,
            "password_hash": self._hasher.hash(password),
            "role": role.value,
            "disabled": False,
            "created_at": now,
            "updated_at": now,
        }
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(operator_users).values(**values))
        except IntegrityError:
            raise AccountError(f"a user named {name} exists already") from None
        return OperatorUser(name=name, role=role, disabled=False, created_at=now)

    def list(self) -> list[OperatorUser]:
        """Returns every account, by name."""
        query = select(operator_users).order_by(operator_users.c.name)
        with self.engine.connect() as connection:
            return [_user(row) for row in connection.execute(query).mappings()]

    def get(self, name: str) -> OperatorUser | None:
        """Returns the account of that name, or None."""
        query = select(operator_users).where(operator_users.c.name == name)
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return None if row is None else _user(row)

    def set_disabled(self, name: str, disabled: bool) -> bool:
        """Disables (or enables) an account; disabling ends its sessions. False if unknown."""
        with self.engine.begin() as connection:
            changed = connection.execute(
                update(operator_users)
                .where(operator_users.c.name == name)
                .values(disabled=disabled, updated_at=datetime.now(UTC))
            ).rowcount
            if disabled:
                connection.execute(
                    delete(operator_sessions).where(operator_sessions.c.user_name == name)
                )
        return bool(changed)

    def authenticate(self, name: str, password: str) -> OperatorUser | None:
        """Returns the account when the name and password match an enabled account."""
        query = select(operator_users).where(operator_users.c.name == name)
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        stored = self._decoy_hash if row is None else row["password_hash"]
        if not self._verify(stored, password[:MAX_PASSWORD_LENGTH]) or row is None:
            return None
        user = _user(row)
        if user.disabled:
            return None
        if self._hasher.check_needs_rehash(stored):
            self._rehash(name, password)
        return user

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    def _rehash(self, name: str, password: str) -> None:
        """Stores the hash again with the current parameters (they were raised since)."""
        with self.engine.begin() as connection:
            connection.execute(
                update(operator_users)
                .where(operator_users.c.name == name)
                .values(password_hash=self._hasher.hash(password), updated_at=datetime.now(UTC))
            )
