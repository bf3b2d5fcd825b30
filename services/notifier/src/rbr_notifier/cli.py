"""`rbr notify test`: test channels from the notifier's host, through the real channel code.

It sends a test alert with the same senders the service uses and prints each channel's
outcome; every try is recorded in `notifications` (kind test) when the database is
reachable. (`rbr alerts` and `rbr channels test` are the registrar's operator API.)
"""

from __future__ import annotations

import getpass
import threading
import time
import uuid
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from rbr_cli.output import fail, settings_or_fail, table
from rbr_notifier.channels import ChannelConfig, ChannelConfigError, ChannelsFile, load_channels
from rbr_notifier.delivery import RetryPolicy, deliver
from rbr_notifier.dispatch import throttle_of
from rbr_notifier.model import AlertState, AlertView, DeliveryState, Kind, Notification
from rbr_notifier.senders import build_sender
from rbr_notifier.senders.base import AttemptResult, quiet_http_client_logs
from rbr_notifier.settings import NotifierSettings
from rbr_notifier.store import NotifierStore
from rbr_runtime.db.engine import make_engine
from rbr_schemas import Severity, utcnow

notify_app = typer.Typer(help="Test notification channels.", no_args_is_help=True)


def _channels(settings: NotifierSettings) -> ChannelsFile:
    try:
        return load_channels(settings.notifier_channels)
    except ChannelConfigError as error:
        fail(str(error), code=2)


def _filters(channel: ChannelConfig) -> str:
    filters = channel.filters
    parts = []
    if filters.min_severity is not None:
        parts.append(f">={filters.min_severity.value}")
    if filters.types is not None:
        parts.append("types=" + ",".join(filters.types))
    if filters.buckets is not None:
        parts.append("buckets=" + ",".join(filters.buckets))
    return " ".join(parts) or "all alerts"


def _throttle(channel: ChannelConfig, settings: NotifierSettings) -> str:
    throttle = throttle_of(channel, settings)
    return "off" if throttle is None else f"{throttle.max}/{throttle.window:g}s"


def sample_alert(channel: str) -> AlertView:
    """Returns the alert a channel test sends."""
    alert_id = str(uuid.uuid4())
    return AlertView(
        alert_id=alert_id,
        dedupe_key=f"test:{channel}:{alert_id}",
        type="test",
        severity=Severity.INFO,
        state=AlertState.FIRING,
        title=f"Test notification for channel {channel}",
        detail="This is a test sent by `rbr notify test`. No action is needed.",
        source="/rbr/notifier (rbr notify test)",
        fired_at=utcnow(),
        context={"sent_by": getpass.getuser()},
    )


@notify_app.command("test")
def run_tests(
    channel: Annotated[
        list[str] | None, typer.Option("--channel", "-c", help="Channel to test (repeatable).")
    ] = None,
    all_channels: Annotated[
        bool, typer.Option("--all", help="Test every enabled channel.")
    ] = False,
    list_channels: Annotated[
        bool, typer.Option("--list", help="List the configured channels.")
    ] = False,
    attempts: Annotated[int, typer.Option(min=1, max=10, help="Tries per channel.")] = 1,
) -> None:
    """Send a test alert through channels and report each outcome (exit 1 if any failed)."""
    settings = settings_or_fail(NotifierSettings)
    quiet_http_client_logs()  # even with `rbr -v`: their request lines hold secret URLs
    channels = _channels(settings)
    if list_channels:
        _print_channels(channels, settings)
        return
    selected = _select(channels, channel or [], all_channels)
    store = _store_or_none(settings)
    failed = 0
    for config in selected:
        failed += 0 if _test_one(config, settings, attempts, store) else 1
    if failed:
        raise typer.Exit(1)


def _print_channels(channels: ChannelsFile, settings: NotifierSettings) -> None:
    if not channels.channels:
        source = settings.notifier_channels or "RBR_NOTIFIER_CHANNELS (unset)"
        typer.echo(f"no channels configured in {source}")
        return
    table(
        ["NAME", "TYPE", "ENABLED", "FILTERS", "THROTTLE", "TARGET"],
        [
            [
                c.name,
                c.type,
                "yes" if c.enabled else "no",
                _filters(c),
                _throttle(c, settings),
                c.target(),
            ]
            for c in channels.channels
        ],
    )


def _select(channels: ChannelsFile, names: list[str], all_channels: bool) -> list[ChannelConfig]:
    if all_channels:
        if not channels.enabled:
            fail("no enabled channels to test")
        return channels.enabled
    if not names:
        fail("say which channels: --channel NAME, --all, or --list to see them", code=2)
    unknown = [name for name in names if channels.get(name) is None]
    if unknown:
        known = ", ".join(c.name for c in channels.channels) or "none configured"
        fail(f"unknown channel(s) {', '.join(unknown)}; configured: {known}", code=2)
    return [config for name in names if (config := channels.get(name)) is not None]


def _store_or_none(settings: NotifierSettings) -> NotifierStore | None:
    store = NotifierStore(make_engine(settings.database_url))
    try:
        store.alerts.list_alerts(limit=1)
    except SQLAlchemyError:
        typer.secho(
            "warning: database not reachable or not migrated; test attempts are not recorded",
            err=True,
            fg=typer.colors.YELLOW,
        )
        return None
    return store


def _test_one(
    config: ChannelConfig, settings: NotifierSettings, attempts: int, store: NotifierStore | None
) -> bool:
    sender = build_sender(config, settings.notifier_timeout)
    notification = Notification(Kind.TEST, config.name, alert=sample_alert(config.name))

    def record(attempt: int, status: str, result: AttemptResult) -> None:
        if store is None:
            return
        store.deliveries.record_attempt(
            alert_id=None,
            dedupe_key=notification.dedupe_key,
            channel=config.name,
            kind=Kind.TEST,
            attempt=attempt,
            status=status,
            http_status=result.http_status,
            error=result.error,
        )

    started = time.monotonic()
    policy = RetryPolicy(
        max_attempts=attempts,
        initial_backoff=settings.notifier_retry_initial_backoff,
        max_backoff=settings.notifier_retry_max_backoff,
        retry_after_max=settings.notifier_retry_after_max,
    )
    try:
        outcome = deliver(sender, notification, policy, record, stop=threading.Event())
    finally:
        sender.close()
    elapsed = time.monotonic() - started
    ok = outcome.state is DeliveryState.SENT
    label = typer.style("ok", fg=typer.colors.GREEN) if ok else typer.style("FAILED", fg="red")
    detail = outcome.last.describe() if not ok or outcome.last.error else "delivered"
    typer.echo(f"{label}  {config.name} ({config.type}) {detail} in {elapsed:.2f}s")
    return ok
