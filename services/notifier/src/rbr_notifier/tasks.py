"""Tasks for `rbr run-task`: one cycle by hand, with settings from the environment."""

from __future__ import annotations

from datetime import timedelta

from rbr_notifier.settings import NotifierSettings
from rbr_notifier.store import NotifierStore
from rbr_runtime.db.engine import make_engine
from rbr_runtime.settings import load_settings
from rbr_schemas import utcnow


def purge_history(store: NotifierStore, retention_days: int) -> str:
    """Deletes alert history older than the retention; returns a one-line summary."""
    if retention_days <= 0:
        return "retention disabled (RBR_NOTIFIER_RETENTION_DAYS=0): nothing deleted"
    removed = store.purge(utcnow() - timedelta(days=retention_days))
    return (
        f"deleted {removed['alerts']} resolved alert(s), {removed['notifications']} "
        f"attempt record(s) and {removed['windows']} throttle window(s) older than "
        f"{retention_days} days"
    )


def cleanup_alerts() -> str:
    """`rbr run-task cleanup_alerts`: applies RBR_NOTIFIER_RETENTION_DAYS now."""
    settings = load_settings(NotifierSettings)
    engine = make_engine(settings.database_url)
    try:
        return purge_history(NotifierStore(engine), settings.notifier_retention_days)
    finally:
        engine.dispose()
