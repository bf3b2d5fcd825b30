"""`rbr replay TOPIC --group G --from-...`: move a consumer group back so it reprocesses.

Every consumer is idempotent, so replaying leaves the same rows, objects and alerts; what it
is for is reprocessing after a fix (a better parser, a repaired table). The group must be
stopped: Kafka changes a group's offsets only while it has no member.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from confluent_kafka import KafkaException

from rbr_cli.output import audited, fail, settings_or_fail
from rbr_runtime.kafka.admin import GroupOffsets, PartitionMove, ReplayError, ReplayStart
from rbr_runtime.settings import CommonSettings

_AGO = re.compile(r"(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>[smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str, now: datetime | None = None) -> datetime:
    """Parses an ISO 8601 time (UTC unless it names a zone) or a duration ago (`6h`, `2d`).

    Raises:
        ValueError: neither form.
    """
    text = value.strip()
    ago = _AGO.fullmatch(text)
    if ago:
        delta = timedelta(**{_UNITS[ago["unit"]]: float(ago["amount"])})
        return (now or datetime.now(UTC)) - delta
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a time: use ISO 8601 (2026-11-21T09:00:00Z) or a duration ago "
            "(90m, 6h, 2d)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _start(from_beginning: bool, from_offset: int | None, from_time: str | None) -> ReplayStart:
    chosen = sum([from_beginning, from_offset is not None, from_time is not None])
    if chosen != 1:
        fail("choose exactly one of --from-beginning, --from-offset N, --from-time T", code=2)
    try:
        moment = parse_time(from_time) if from_time is not None else None
        return ReplayStart(beginning=from_beginning, offset=from_offset, time=moment)
    except ValueError as error:
        fail(str(error), code=2)


def replay(  # noqa: PLR0917 - typer maps each parameter to an argument or option
    topic: Annotated[str, typer.Argument(help="Topic to reprocess, e.g. logs.extracted.")],
    group: Annotated[
        str, typer.Option("--group", "-g", help="Consumer group to move, e.g. parser.")
    ],
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="From the oldest message kept.")
    ] = False,
    from_offset: Annotated[
        int | None,
        typer.Option("--from-offset", help="From this offset (every partition, or --partition)."),
    ] = None,
    from_time: Annotated[
        str | None,
        typer.Option(
            "--from-time",
            help="From the first message at or after this time: ISO 8601 (UTC unless a zone "
            "is given) or a duration ago such as 90m, 6h, 2d.",
        ),
    ] = None,
    partition: Annotated[
        int | None, typer.Option("--partition", "-p", help="Only this partition.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
    ] = False,
    allow_skip: Annotated[
        bool,
        typer.Option(
            "--allow-skip",
            help="Also move offsets FORWARD, past messages the group has not processed "
            "(they are then never processed by it).",
        ),
    ] = False,
) -> None:
    """Move a stopped consumer group's offsets back so it reprocesses a topic."""
    start = _start(from_beginning, from_offset, from_time)
    settings = settings_or_fail(CommonSettings)
    offsets = GroupOffsets(settings, group, topic)
    try:
        moves = _plan(offsets, start, partition, dry_run)
        _show(topic, group, moves)
        if dry_run:
            typer.echo("dry run: no offset was changed")
            return
        _refuse_skipping(moves, allow_skip)
        offsets.apply(moves)
    except ReplayError as error:
        fail(str(error))
    except KafkaException as error:
        fail(f"cannot talk to the broker at {settings.kafka_bootstrap}: {error}")
    changed = [m for m in moves if m.changes]
    total = sum(m.to_reprocess for m in changed)
    typer.echo(
        f"moved {group}'s offsets on {len(changed)} partition(s) of {topic}; start its "
        f"consumers to reprocess {total} message(s)"
    )
    audited(
        settings,
        "topic.replay",
        f"{topic} {group}",
        {"partitions": len(changed), "messages": total},
    )


def _plan(
    offsets: GroupOffsets, start: ReplayStart, partition: int | None, dry_run: bool
) -> list[PartitionMove]:
    activity = offsets.activity()
    if activity.active and not dry_run:
        raise ReplayError(
            f"consumer group {offsets.group!r} {activity.describe()}: stop them first "
            "(offsets can only be moved while the group is stopped), then run this again"
        )
    typer.echo(f"reading {offsets.topic} to plan the replay ...", err=True)
    return offsets.plan(start, partition, progress=lambda line: typer.echo(line, err=True))


def _refuse_skipping(moves: list[PartitionMove], allow_skip: bool) -> None:
    """Refuses a move past unprocessed messages unless asked for: they would be lost.

    Raises:
        ReplayError: some partition would move forward and --allow-skip was not given.
    """
    forward = [m for m in moves if m.committed is not None and m.target > m.committed]
    if not forward or allow_skip:
        return
    skipped = sum(m.target - (m.committed or 0) for m in forward)
    partitions = ", ".join(str(m.partition) for m in forward)
    raise ReplayError(
        f"refusing to move offsets FORWARD on partition(s) {partitions}: {skipped} message(s) "
        "the group has not processed would be skipped and never processed by it. Pick an "
        "earlier start, or add --allow-skip if skipping them is what you want. No offset "
        "was changed."
    )


def _show(topic: str, group: str, moves: list[PartitionMove]) -> None:
    typer.echo(f"{group} on {topic}:")
    changed = [move for move in moves if move.changes]
    for move in changed:
        typer.echo(f"  {move.describe()}")
    if len(changed) < len(moves):
        typer.echo(f"  {len(moves) - len(changed)} partition(s) unchanged (nothing to reprocess)")
