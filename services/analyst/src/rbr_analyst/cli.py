"""`rbr iocs`: the fleet's indicators of compromise, exported from the database.

Reads the `iocs` table directly (`RBR_DATABASE_URL`), with the same export code as the
operator API (`GET /api/v1/iocs/export` on the registrar), streaming to stdout or a file.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from rbr_runtime.db.engine import make_engine
from rbr_runtime.intel.export import ExportFormat, ExportQuery, export, techniques_seen
from rbr_runtime.intel.overview import IntelOverview, Period, overview
from rbr_runtime.settings import CommonSettings, load_settings
from rbr_schemas import utcnow

app = typer.Typer(help="Indicators of compromise seen by the fleet.", no_args_is_help=True)


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise typer.BadParameter(f"not an ISO 8601 time: {value!r}") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command("export")
def export_command(  # noqa: PLR0917 - a command's options
    format: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="stix, misp, csv or blocklist")
    ] = ExportFormat.STIX,
    since: Annotated[
        str | None, typer.Option(help="Only indicators sighted at or after (ISO 8601).")
    ] = None,
    min_confidence: Annotated[int, typer.Option(min=0, max=100)] = 0,
    types: Annotated[
        list[str] | None, typer.Option("--type", help="Only this indicator type (repeatable).")
    ] = None,
    min_age: Annotated[
        float, typer.Option(min=0, help="Only indicators first seen this many seconds ago.")
    ] = 0,
    max_age: Annotated[
        float | None, typer.Option(min=0, help="Only indicators last seen within seconds.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default: stdout).")
    ] = None,
) -> None:
    """Writes the indicators as a STIX 2.1 bundle, a MISP event, CSV or an IP blocklist."""
    settings = load_settings(CommonSettings)
    engine = make_engine(settings.database_url)
    query = ExportQuery(
        since=_when(since),
        min_confidence=min_confidence,
        types=tuple(types) if types else None,
        min_age=min_age,
        max_age=max_age,
    )
    try:
        stream = output.open("w") if output else sys.stdout
        try:
            for chunk in export(engine, format, query, utcnow()):
                stream.write(chunk)
        finally:
            if output:
                stream.close()
    finally:
        engine.dispose()


@app.command("techniques")
def techniques_command(
    bucket: Annotated[str | None, typer.Option(help="One bucket's (default: the fleet's).")] = None,
) -> None:
    """Lists the ATT&CK techniques seen: first and last seen, windows, findings."""
    settings = load_settings(CommonSettings)
    engine = make_engine(settings.database_url)
    try:
        seen = techniques_seen(engine, bucket)
    finally:
        engine.dispose()
    if not seen:
        typer.echo("no technique seen yet")
        return
    for item in seen:
        typer.echo(
            f"{item['technique']:<10} {item['windows']:>6} windows  {item['first_seen']} .. "
            f"{item['last_seen']}  {item['name']} ({', '.join(item['tactics'])})"
        )


@app.command("overview")
def overview_command(
    period: Annotated[Period, typer.Option(help="24h, 7d or 30d, ending now.")] = Period.DAY,
    as_json: Annotated[bool, typer.Option("--json", help="As JSON.")] = False,
) -> None:
    """Shows the fleet's intelligence over a period, as the console's Intel page does."""
    settings = load_settings(CommonSettings)
    engine = make_engine(settings.database_url)
    try:
        found = overview(engine, period, utcnow())
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(found), default=str, ensure_ascii=True))
        return
    for line in _overview_lines(found):
        typer.echo(line)


def _overview_lines(found: IntelOverview) -> list[str]:
    """The overview as text; indicator values defanged, control characters escaped."""
    lines = [f"{found.since:%Y-%m-%d %H:%M} .. {found.until:%Y-%m-%d %H:%M} UTC", "techniques:"]
    lines += [
        f"  {t.technique:<10} {t.buckets:>4} buckets {t.windows:>6} windows  {t.name or '-'}"
        for t in found.techniques
    ] or ["  none"]
    for title, places in (("countries", found.countries), ("AS", found.as_orgs)):
        shown = ", ".join(f"{_safe(p.name)} ({p.addresses})" for p in places) or "none"
        lines.append(f"{title}: {shown}")
    lines.append(f"new indicators: {found.new_indicators}")
    lines += [
        f"  {i.type:<10} {i.confidence:>3}  {_safe(i.defanged)}" for i in found.newest_indicators
    ]
    return lines


def _safe(text: str) -> str:
    """Attacker text for a terminal: non-printable characters escaped, cut at 200."""
    return text.encode("unicode_escape").decode("ascii")[:200]
