"""Server-side console sessions and the login rate limit, both kept in the database.

The cookie carries a random session id; the table keeps only its sha256, the user, the CSRF
token and the expiry. A login always starts a new session (no fixation); logout deletes it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, func, insert, select

from rbr_registrar.console.accounts import Role
from rbr_runtime.db.tables import login_failures, operator_sessions, operator_users


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class ConsoleSession:
    """A live session: whose it is, their role now, and the token its forms must carry."""

    user_name: str
    role: Role
    csrf_token: str
    expires_at: datetime


class Sessions:
    """The `operator_sessions` table."""

    def __init__(self, engine: Engine, lifetime: float) -> None:
        self._engine = engine
        self._lifetime = timedelta(seconds=lifetime)

    def start(self, user_name: str, role: Role) -> tuple[str, ConsoleSession]:
        """Starts a session; returns the cookie's value (only ever held by the browser)."""
        session_id = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        session = ConsoleSession(user_name, role, secrets.token_urlsafe(32), now + self._lifetime)
        with self._engine.begin() as connection:
            connection.execute(
                delete(operator_sessions).where(operator_sessions.c.expires_at < now)
            )
            connection.execute(
                insert(operator_sessions).values(
                    id_sha256=_sha256(session_id),
                    user_name=user_name,
                    csrf_token=session.csrf_token,
                    created_at=now,
                    expires_at=session.expires_at,
                )
            )
        return session_id, session

    def find(self, session_id: str) -> ConsoleSession | None:
        """Returns the live session of a cookie's value: unexpired, its account enabled."""
        query = (
            select(
                operator_sessions.c.user_name,
                operator_sessions.c.csrf_token,
                operator_sessions.c.expires_at,
                operator_users.c.role,
            )
            .join(operator_users, operator_users.c.name == operator_sessions.c.user_name)
            .where(
                operator_sessions.c.id_sha256 == _sha256(session_id),
                operator_sessions.c.expires_at > datetime.now(UTC),
                operator_users.c.disabled.is_(False),
            )
        )
        with self._engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        if row is None:
            return None
        return ConsoleSession(
            row["user_name"], Role(row["role"]), row["csrf_token"], row["expires_at"]
        )

    def end(self, session_id: str) -> None:
        """Deletes a session (logout)."""
        with self._engine.begin() as connection:
            connection.execute(
                delete(operator_sessions).where(
                    operator_sessions.c.id_sha256 == _sha256(session_id)
                )
            )


class LoginLimit:
    """At most `max_failures` failed logins per user name and client address per window.

    Every attempt is recorded before the password is checked, and counted with the attempts
    before it: logins sent side by side cannot all pass a check made before any of them was
    recorded. A successful login forgets them (`clear`).
    """

    def __init__(self, engine: Engine, max_failures: int, window: float) -> None:
        self._engine = engine
        self._max_failures = max_failures
        self._window = timedelta(seconds=window)

    @staticmethod
    def _key(user_name: str, address: str) -> str:
        return _sha256(f"{user_name}\n{address}")

    def attempt(self, user_name: str, address: str) -> float | None:
        """Records a login attempt; returns the seconds to wait when it is one too many.

        None means the password may be checked now.
        """
        now = datetime.now(UTC)
        key = self._key(user_name, address)
        with self._engine.begin() as connection:
            connection.execute(
                delete(login_failures).where(login_failures.c.failed_at < now - self._window)
            )
            connection.execute(insert(login_failures).values(key_sha256=key, failed_at=now))
        query = select(func.count(), func.min(login_failures.c.failed_at)).where(
            login_failures.c.key_sha256 == key,
            login_failures.c.failed_at > now - self._window,
        )
        with self._engine.connect() as connection:
            count, oldest = connection.execute(query).one()
        if count <= self._max_failures or oldest is None:
            return None
        wait: float = (oldest + self._window - now).total_seconds()
        return max(1.0, wait)

    def clear(self, user_name: str, address: str) -> None:
        """Forgets the failures of a user name and address after a successful login."""
        with self._engine.begin() as connection:
            connection.execute(
                delete(login_failures).where(
                    login_failures.c.key_sha256 == self._key(user_name, address)
                )
            )
