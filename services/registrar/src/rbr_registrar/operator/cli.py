"""`rbr analyses`, `rbr logs`, `rbr alerts`, `rbr channels` and `rbr audit`: the operator API.

Like `rbr buckets`, these call the registrar (`RBR_REGISTRAR_URL`) with the operator key.
Log records, alert texts and analyses are attacker-controlled: control characters are
replaced before printing, so a record cannot drive the terminal.
"""

from __future__ import annotations

import json
import sys
import time
import unicodedata
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from rbr_registrar.cli import _fail, call_api, fail_on_error, request_api

analyses_app = typer.Typer(help="Analyses of the buckets' logs: list, show.", no_args_is_help=True)
logs_app = typer.Typer(help="Parsed log records: search.", no_args_is_help=True)
alerts_app = typer.Typer(
    help="Alerts: list, show (text, history, deliveries), acknowledge, resolve.",
    no_args_is_help=True,
)
channels_app = typer.Typer(help="Notification channels: list, send a test.", no_args_is_help=True)
audit_app = typer.Typer(
    help="The audit log of operator changes: list, export.", no_args_is_help=True
)

Json = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]
Limit = Annotated[int, typer.Option(min=1, help="At most this many.")]
Since = Annotated[str | None, typer.Option(help="From this time (ISO 8601, UTC if bare).")]
Until = Annotated[str | None, typer.Option(help="Before this time (ISO 8601, UTC if bare).")]
Bucket = Annotated[str | None, typer.Option(help="Only this bucket's.")]


def printable(text: str | None, limit: int | None = None, *, lines: bool = False) -> str:
    """Returns hostile text safe for a terminal: control characters shown as `?`."""
    if text is None:
        return "-"
    kept = "\n" if lines else ""
    cleaned = "".join(
        ch if ch in kept or unicodedata.category(ch) not in ("Cc", "Cf") else "?" for ch in text
    )
    if limit is not None and len(cleaned) > limit:
        return cleaned[: limit - 1] + "…"
    return cleaned


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    cells = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def _when(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else "-"


def _params(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _collect(path: str, key: str, params: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """Returns up to `limit` entries of a cursor-paged list."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while len(found) < limit:
        paging: dict[str, Any] = {"limit": min(1000, limit - len(found))}
        if cursor:
            paging["cursor"] = cursor
        page = call_api("GET", path, params={**params, **paging})
        found += page[key]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    return found


def _json_lines(entries: Sequence[dict[str, Any]]) -> None:
    for entry in entries:
        typer.echo(json.dumps(entry, ensure_ascii=True))


# -- analyses ---------------------------------------------------------------------------------


@analyses_app.command("list")
def list_analyses(  # noqa: PLR0917 - the filters
    bucket: Bucket = None,
    severity: Annotated[str | None, typer.Option(help="info, low, medium, high, critical.")] = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
    as_json: Json = False,
) -> None:
    """List analyses, newest first."""
    params = _params(bucket=bucket, severity=severity, since=since, until=until)
    rows = _collect("/api/v1/analyses", "analyses", params, limit)
    if as_json:
        _json_lines(rows)
        return
    if not rows:
        typer.echo("no analyses")
        return
    _table(
        ["ID", "BUCKET", "WINDOW (UTC)", "SEVERITY", "BY", "FINDINGS", "IOCS", "RECORDS"],
        [
            [
                str(a["id"]),
                a["bucket"],
                f"{_when(a['window_start'])} +4h",
                a["severity"],
                a["analyser"],
                str(a["findings"]),
                str(a["iocs"]),
                str(a["log_rows"]),
            ]
            for a in rows
        ],
    )


@analyses_app.command("show")
def show_analysis(analysis_id: Annotated[int, typer.Argument(help="The analysis id.")]) -> None:
    """Show an analysis whole: text, findings, indicators, recommended actions."""
    found = call_api("GET", f"/api/v1/analyses/{analysis_id}")
    typer.echo(
        f"analysis {found['id']} of {found['bucket']}: {_when(found['window_start'])} to "
        f"{_when(found['window_end'])}, severity {found['severity']}, by {found['analyser']}"
        + (f" ({printable(found['model'])})" if found.get("model") else "")
        + f", {found['log_rows']} records"
    )
    if found.get("fallback_reason"):
        typer.echo(f"rules, not the model: {printable(found['fallback_reason'])}")
    typer.echo("")
    typer.echo(printable(found["analysis"], lines=True))
    for title, key in (
        ("findings", "findings"),
        ("indicators of compromise", "iocs"),
        ("recommended actions", "recommended_actions"),
    ):
        typer.echo(f"\n{title}:" if found[key] else f"\n{title}: none")
        for item in found[key]:
            shown = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
            typer.echo(f"  - {printable(shown)}")


# -- logs -------------------------------------------------------------------------------------


@logs_app.command("search")
def search_logs(  # noqa: PLR0917 - the filters
    bucket: Bucket = None,
    since: Since = None,
    until: Until = None,
    event_type: Annotated[str | None, typer.Option(help="login_failed, command, ...")] = None,
    source_ip: Annotated[str | None, typer.Option(help="The attacker's address.")] = None,
    username: Annotated[str | None, typer.Option(help="The username tried.")] = None,
    command: Annotated[str | None, typer.Option(help="Commands containing this.")] = None,
    text: Annotated[str | None, typer.Option(help="Raw records containing this.")] = None,
    limit: Limit = 100,
    as_json: Json = False,
) -> None:
    """Search parsed log records, newest first.

    A search by --command or --text without --since or --until covers the last 24 hours.
    """
    if (command or text) and since is None and until is None:
        typer.echo("searching the last 24 hours: give --since to search further back", err=True)
    params = _params(
        bucket=bucket,
        since=since,
        until=until,
        event_type=event_type,
        source_ip=source_ip,
        username=username,
        command=command,
        text=text,
    )
    rows = _collect("/api/v1/logs", "logs", params, limit)
    if as_json:
        _json_lines(rows)
        return
    if not rows:
        typer.echo("no log records match")
        return
    _table(
        ["STORED (UTC)", "BUCKET", "EVENT", "SOURCE", "USER", "COMMAND / RECORD"],
        [
            [
                _when(r["created_at"]),
                r["bucket"],
                r["event_type"],
                r["source_ip"] or "-",
                printable(r["username"], 24),
                printable(r["command"] or r["message"] or r["log"], 100),
            ]
            for r in rows
        ],
    )


# -- alerts -----------------------------------------------------------------------------------


@alerts_app.command("list")
def list_alerts(  # noqa: PLR0917 - the filters
    state: Annotated[str | None, typer.Option(help="firing, acknowledged or resolved.")] = None,
    bucket: Bucket = None,
    severity: Annotated[str | None, typer.Option(help="info, low, medium, high, critical.")] = None,
    alert_type: Annotated[
        str | None, typer.Option("--type", help="e.g. bucket_unresponsive.")
    ] = None,
    since: Since = None,
    limit: Limit = 50,
    as_json: Json = False,
) -> None:
    """List alert occurrences, newest first."""
    params = _params(state=state, bucket=bucket, severity=severity, type=alert_type, since=since)
    rows = _collect("/api/v1/alerts", "alerts", params, limit)
    if as_json:
        _json_lines(rows)
        return
    if not rows:
        typer.echo("no alerts" + (f" in state {state}" if state else ""))
        return
    _table(
        ["FIRED (UTC)", "ALERT ID", "STATE", "SEVERITY", "DEDUPE KEY", "BUCKET", "TITLE"],
        [
            [
                _when(a["fired_at"]),
                a["alert_id"],
                a["state"],
                a["severity"],
                printable(a["dedupe_key"], 50),
                a["bucket"] or "-",
                printable(a["title"], 60),
            ]
            for a in rows
        ],
    )


def _occurrences(key: str, states: tuple[str, ...] | None = None) -> list[str]:
    """Returns the alert ids a dedupe key designates (in these states), newest first.

    A key no alert has as dedupe key is taken as an alert id (the API then answers for it).
    """
    params = {"dedupe_key": key, "limit": 100}
    listed = call_api("GET", "/api/v1/alerts", params=params)["alerts"]
    if listed:
        return [a["alert_id"] for a in listed if states is None or a["state"] in states]
    return [key] if len(key) <= 64 else []


@alerts_app.command("show")
def show_alert(
    key: Annotated[str, typer.Argument(help="The alert id, or its dedupe key (the newest).")],
) -> None:
    """Show an alert whole: text, context, history, deliveries and every send attempt."""
    ids = _occurrences(key)
    if not ids:
        _fail(f"no alert with id or dedupe key {printable(key, 80)} (see `rbr alerts list`)")
    alert = call_api("GET", f"/api/v1/alerts/{ids[0]}")
    typer.echo(f"{printable(alert['title'])}")
    for label, field in (
        ("alert id", "alert_id"),
        ("dedupe key", "dedupe_key"),
        ("type", "type"),
        ("severity", "severity"),
        ("state", "state"),
        ("bucket", "bucket"),
        ("source", "source"),
    ):
        typer.echo(f"{label:<12} {printable(alert[field])}")
    typer.echo(f"\n{printable(alert['detail'], lines=True)}\n")
    if alert["context"]:
        typer.echo("context:")
        for name, value in alert["context"].items():
            typer.echo(f"  {printable(name)}: {printable(str(value), 200)}")
    typer.echo("history:")
    for event in alert["history"]:
        detail = f"  {printable(event['detail'], 100)}" if event.get("detail") else ""
        typer.echo(f"  {_when(event['at'])}  {event['event']}{detail}")
    typer.echo("deliveries:" if alert["deliveries"] else "deliveries: none")
    for d in alert["deliveries"]:
        typer.echo(
            f"  {d['kind']:<8} {d['channel']:<20} {d['state']:<10} {d['attempts']} attempt(s)"
            f"  {printable(d['detail'], 100) if d.get('detail') else ''}".rstrip()
        )
    if alert["attempts"]:
        typer.echo("attempts:")
        _table(
            ["AT (UTC)", "CHANNEL", "KIND", "#", "STATUS", "HTTP", "ERROR"],
            [
                [
                    _when(a["at"]),
                    a["channel"],
                    a["kind"],
                    str(a["attempt"]),
                    a["status"],
                    str(a["http_status"] or "-"),
                    printable(a["error"] or "", 80),
                ]
                for a in alert["attempts"]
            ],
        )
    if alert["other_occurrences"]:
        typer.echo(f"other occurrences: {', '.join(alert['other_occurrences'][:10])}")


def _change_alerts(action: str, key: str, states: tuple[str, ...]) -> None:
    ids = _occurrences(key, states)
    if not ids:
        wanted = " or ".join(states)
        _fail(f"no {wanted} alert with dedupe key {printable(key, 80)} (see `rbr alerts list`)")
    for alert_id in ids:
        result = call_api("POST", f"/api/v1/alerts/{alert_id}/{action}")
        typer.echo(f"{alert_id}: {result['outcome']}")


@alerts_app.command("ack")
def acknowledge(
    key: Annotated[str, typer.Argument(help="The alert id, or a dedupe key (all firing).")],
) -> None:
    """Acknowledge a firing alert: it is not notified again (its resolve still is)."""
    _change_alerts("ack", key, ("firing",))


@alerts_app.command("resolve")
def resolve(
    key: Annotated[str, typer.Argument(help="The alert id, or a dedupe key (all open).")],
) -> None:
    """Resolve an alert: the notifier closes it and notifies its channels of the resolve."""
    _change_alerts("resolve", key, ("firing", "acknowledged"))


# -- channels ---------------------------------------------------------------------------------


@channels_app.command("list")
def list_channels() -> None:
    """List the channels the notifier has delivered to, with their last 24 hours."""
    rows = call_api("GET", "/api/v1/channels")
    if not rows:
        typer.echo("no deliveries yet (`rbr notify test --list` lists the configured channels)")
        return
    _table(
        ["CHANNEL", "LAST DELIVERY (UTC)", "LAST STATE", "SENT 24H", "FAILED 24H"],
        [
            [
                c["channel"],
                _when(c["last_delivery_at"]),
                c["last_state"] or "-",
                str(c["sent_24h"]),
                str(c["failed_24h"]),
            ]
            for c in rows
        ],
    )


@channels_app.command("test")
def send_channel_test(
    channel: Annotated[str, typer.Argument(help="The channel's name.")],
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the delivery's outcome (0: do not wait).")
    ] = 30.0,
) -> None:
    """Send a test alert to one channel through the notifier, and wait for how it went."""
    queued = call_api("POST", f"/api/v1/channels/{channel}/test")
    alert_id = queued["alert_id"]
    typer.echo(f"test alert {alert_id} queued for {channel}")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        deliveries = _test_deliveries(alert_id)
        if deliveries and deliveries[0]["state"] in ("sent", "failed", "rejected"):
            delivery = deliveries[0]
            typer.echo(f"{channel}: {delivery['state']} {printable(delivery['detail'] or '')}")
            if delivery["state"] != "sent":
                raise typer.Exit(1)
            return
        time.sleep(1.0)
    if wait:
        _fail(
            f"no outcome within {wait:g} s: `rbr alerts show {alert_id}` shows it once the "
            "notifier has it (a channel it does not have gets nothing)"
        )


def _test_deliveries(alert_id: str) -> list[dict[str, Any]]:
    """Returns the test alert's deliveries; none until the notifier has recorded it."""
    answer = request_api("GET", f"/api/v1/alerts/{alert_id}")
    if answer.status_code == 404:
        return []
    fail_on_error(answer)
    deliveries: list[dict[str, Any]] = answer.json()["deliveries"]
    return deliveries


# -- audit ------------------------------------------------------------------------------------


@audit_app.command("list")
def list_audit(
    actor: Annotated[str | None, typer.Option(help="Only this actor's changes.")] = None,
    action: Annotated[
        str | None, typer.Option(help="e.g. bucket.approve, alert.acknowledge.")
    ] = None,
    since: Since = None,
    limit: Limit = 100,
) -> None:
    """List the changes operators made, newest first."""
    rows = _collect(
        "/api/v1/audit", "entries", _params(actor=actor, action=action, since=since), limit
    )
    if not rows:
        typer.echo("no audit entries")
        return
    _table(
        ["AT (UTC)", "ACTOR", "ACTION", "TARGET", "OUTCOME", "DETAIL"],
        [
            [
                _when(e["at"]),
                printable(e["actor"], 40),
                e["action"],
                printable(e["target"], 60),
                e["outcome"],
                printable(json.dumps(e["detail"]), 60),
            ]
            for e in rows
        ],
    )


@audit_app.command("export")
def export_audit(
    export_format: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    since: Since = None,
) -> None:
    """Write the whole audit log to stdout as CSV or JSON lines (admins)."""
    if export_format not in ("csv", "json"):
        _fail("the format must be csv or json", 2)
    params = _params(format=export_format, since=since)
    answer = request_api("GET", "/api/v1/audit/export", timeout=300.0, params=params)
    fail_on_error(answer)
    sys.stdout.write(answer.text)
