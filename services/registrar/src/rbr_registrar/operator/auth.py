"""Who is calling the operator API (`current_actor`) and what their role allows (`require_role`).

The operator key is an admin; a console session (cookie and CSRF header) is its user with their
role. Routes only ever depend on `require_role(...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from rbr_runtime.secrets import constant_time_in

OPERATOR_KEY_ACTOR = "operator-key"

bearer = HTTPBearer(auto_error=False, description="Enrollment key or operator key.")


class Role(StrEnum):
    """What an actor may do: a viewer reads, an operator changes, an admin also administers."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Returns the role's place in viewer < operator < admin."""
        return list(Role).index(self)


@dataclass(frozen=True)
class Actor:
    """Who is calling: a name written to the audit log, and a role."""

    name: str
    role: Role

    def may(self, role: Role) -> bool:
        """Returns whether this actor has at least `role`."""
        return self.role.rank >= role.rank


SessionActor = Callable[[Request], "Actor | None"]
"""The console's hook (`app.state.session_actor`): the actor of a request's session cookie."""


def operator_key_of(request: Request) -> SecretStr | None:
    """Returns the operator key the application was built with (`app.state.operator_key`)."""
    key: SecretStr | None = getattr(request.app.state, "operator_key", None)
    return key


def unauthorised(message: str, scheme: str = "Bearer") -> HTTPException:
    """Returns a 401 asking for credentials."""
    return HTTPException(401, message, headers={"WWW-Authenticate": scheme})


def current_actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
) -> Actor:
    """Returns who is calling: the operator key is an admin; a console session, its user.

    Without an Authorization header, a console session cookie is accepted (the user with
    their role); a change made that way must carry the session's CSRF token as X-CSRF-Token.

    Raises:
        HTTPException: 403 when the operator API is off or the key is wrong, 401 without one.
    """
    if credentials is None:
        session_actor: SessionActor | None = getattr(request.app.state, "session_actor", None)
        actor = session_actor(request) if session_actor is not None else None
        if actor is not None:
            return actor
    key = operator_key_of(request)
    if key is None:
        raise HTTPException(
            403, "the operator API is disabled: set RBR_OPERATOR_KEY on the registrar"
        )
    if credentials is None:
        raise unauthorised("send the operator key as Authorization: Bearer <key>")
    if not constant_time_in(credentials.credentials, [key.get_secret_value()]):
        raise HTTPException(403, "operator key not accepted")
    return Actor(OPERATOR_KEY_ACTOR, Role.ADMIN)


CurrentActor = Annotated[Actor, Depends(current_actor)]


def require_role(role: Role | str) -> Callable[[Actor], Actor]:
    """Returns a dependency answering the actor if it has at least `role`, else 403."""
    wanted = Role(role)

    def dependency(actor: CurrentActor) -> Actor:
        if not actor.may(wanted):
            raise HTTPException(
                403, f"{actor.name} is a {actor.role.value}: this needs the {wanted.value} role"
            )
        return actor

    return dependency
