"""`rbr topics announce-objects`: announce raw objects again whose logs.extracted was lost."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from rbr_log_extractor.announce import event_id
from rbr_log_extractor.reannounce import find_unparsed, raw_objects
from rbr_log_extractor.settings import ExtractorSettings
from rbr_runtime.db.engine import make_engine
from rbr_runtime.kafka import EventProducer
from rbr_runtime.kafka.directory import read_registrations
from rbr_runtime.s3 import make_s3_client
from rbr_runtime.settings import ConfigError, load_settings
from rbr_schemas import LOGS_EXTRACTED, utcnow

SOURCE = "/rbr/log-extractor"
SHOWN = 20


def announce_objects(
    since_hours: Annotated[
        float,
        typer.Option("--since-hours", min=0.1, help="Look at objects stored this recently."),
    ] = 168.0,
    min_age: Annotated[
        float,
        typer.Option(help="Seconds an object must have been stored (newer: still in flight)."),
    ] = 600.0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list the objects that would be announced.")
    ] = False,
) -> None:
    """Announce raw objects again that were stored but never parsed (logs.extracted lost).

    Objects under raw/ in RBR_S3_BUCKET stored in the last --since-hours (default: the 7 days
    logs.extracted keeps) and at least --min-age seconds ago, with no logs row of their
    content (sha256) and bucket, get their logs.extracted event again, with the id it first
    had. The parser stores an object's records once, so running this twice is harmless.
    Keep --since-hours below RBR_LOG_RETENTION_DAYS: older objects' rows may have been
    deleted by retention on purpose.
    """
    try:
        settings = load_settings(ExtractorSettings)
    except ConfigError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from error
    now = utcnow()
    s3 = make_s3_client(settings)
    engine = make_engine(settings.database_url)
    try:
        registrations = {record.name: record for record in read_registrations(settings)}
        found = raw_objects(
            s3,
            settings.s3_bucket,
            now - timedelta(hours=since_hours),
            now - timedelta(seconds=min_age),
        )
        report = find_unparsed(s3, settings.s3_bucket, engine, registrations, found)
    finally:
        engine.dispose()
    typer.echo(
        f"{report.checked} raw object(s) stored in the last {since_hours:g} h: "
        f"{report.parsed} parsed, {len(report.unparsed)} never parsed"
        + (f", {len(report.unregistered)} of buckets no longer registered (left alone)"
           if report.unregistered else "")
    )  # fmt: skip
    for event in report.unparsed[:SHOWN]:
        typer.echo(f"  {event.name}: {event.s3_key}")
    if len(report.unparsed) > SHOWN:
        typer.echo(f"  and {len(report.unparsed) - SHOWN} more")
    if dry_run or not report.unparsed:
        if dry_run:
            typer.echo(f"would announce {len(report.unparsed)} object(s) (dry run)")
        return
    producer = EventProducer(settings, source=SOURCE)
    for event in report.unparsed:
        producer.send(
            LOGS_EXTRACTED,
            event.name,
            event,
            subject=event.name,
            event_id=event_id(event.object_id),
        )
    producer.flush()
    typer.echo(f"announced again: {len(report.unparsed)} object(s) on {LOGS_EXTRACTED.name}")
