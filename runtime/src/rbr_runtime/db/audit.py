"""Writing one entry of the audit log (`audit_log`), for every service and the CLI."""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert
from sqlalchemy.exc import SQLAlchemyError

from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.tables import audit_log
from rbr_schemas import utcnow

MAX_TARGET_CHARS = 255


def write_audit(
    bind: Engine | Connection,
    *,
    actor: str,
    role: str,
    action: str,
    target: str | None,
    outcome: str,
    detail: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Writes one audit entry (in the caller's transaction when given a connection).

    `detail` must hold no secret: it is shown to every operator who reads the log.
    """
    row = {
        "at": at or utcnow(),
        "actor": actor[:MAX_TARGET_CHARS],
        "role": role,
        "action": action,
        "target": target[:MAX_TARGET_CHARS] if target else None,
        "detail": dict(detail or {}),
        "outcome": outcome[:32],
    }
    if isinstance(bind, Connection):
        bind.execute(insert(audit_log).values(row))
        return
    with bind.begin() as connection:
        connection.execute(insert(audit_log).values(row))


def cli_actor() -> str:
    """Returns who makes a change through the CLI: the local user."""
    return f"cli:{getpass.getuser()}"


def audit_cli_change(
    database_url: str, action: str, target: str, detail: Mapping[str, Any]
) -> str | None:
    """Writes a change made by the CLI outside the operator API; returns an error, if any.

    The change is made already, so a database that cannot take the entry is reported to the
    caller (to print), not raised.
    """
    engine = make_engine(database_url)
    try:
        write_audit(
            engine,
            actor=cli_actor(),
            role="admin",
            action=action,
            target=target,
            outcome="done",
            detail=detail,
        )
    except SQLAlchemyError as error:
        return f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    finally:
        engine.dispose()
    return None
