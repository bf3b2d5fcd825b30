"""`rbr topics create|list|describe`."""

from __future__ import annotations

from typing import Annotated

import typer

from rbr_cli.output import fail, settings_or_fail, table
from rbr_runtime.kafka.probe import broker_metadata
from rbr_runtime.kafka.topics import ensure_topics
from rbr_runtime.settings import CommonSettings
from rbr_schemas.topics import TOPICS

app = typer.Typer(help="Create and inspect the registry's topics.", no_args_is_help=True)


@app.command()
def create(
    partitions: Annotated[
        int | None,
        typer.Option(help="Partitions for every source topic instead of the contract's."),
    ] = None,
) -> None:
    """Create every topic and dead-letter topic that does not exist yet (idempotent)."""
    settings = settings_or_fail(CommonSettings)
    try:
        reports = ensure_topics(settings, partitions_override=partitions)
    except Exception as error:  # noqa: BLE001 - any broker failure ends the command clearly
        fail(f"cannot reach the broker at {settings.kafka_bootstrap}: {error}")
    table(
        ["topic", "partitions", "outcome"],
        [(r.name, r.partitions, r.outcome.value) for r in reports],
    )


@app.command("list")
def list_topics() -> None:
    """List the topics on the broker, marking those of the registry's contract."""
    settings = settings_or_fail(CommonSettings)
    try:
        metadata = broker_metadata(settings, timeout=10)
    except ConnectionError as error:
        fail(str(error))
    ours = {name for spec in TOPICS for name in (spec.name, spec.dlq)}
    rows = [
        (name, len(topic.partitions), "contract" if name in ours else "")
        for name, topic in sorted(metadata.topics.items())
        if not name.startswith("__")
    ]
    table(["topic", "partitions", ""], rows)


@app.command()
def describe(name: Annotated[str, typer.Argument(help="Topic name, e.g. logs.extracted.")]) -> None:
    """Show a topic's contract (key, schema, producers, consumers) and its partitions."""
    settings = settings_or_fail(CommonSettings)
    spec = next((s for s in TOPICS if name in (s.name, s.dlq)), None)
    if spec is not None:
        typer.echo(f"{spec.name}: {spec.description}")
        typer.echo(f"  key: {spec.key}; event type: {spec.event_type}")
        typer.echo(f"  producers: {', '.join(spec.producers)}")
        typer.echo(f"  consumers: {', '.join(spec.consumers)}")
        typer.echo(f"  config: {spec.config}")
    try:
        # Asking about one topic by name can auto-create it; list them all instead.
        metadata = broker_metadata(settings, timeout=10)
    except ConnectionError as error:
        fail(str(error))
    topic = metadata.topics.get(name)
    if topic is None or topic.error is not None:
        fail(f"topic {name!r} does not exist on {settings.kafka_bootstrap}")
    typer.echo(f"  partitions on the broker: {len(topic.partitions)}")
