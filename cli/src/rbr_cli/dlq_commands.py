"""`rbr dlq list|replay`: inspect dead letters and send them back for another try."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

import typer

from rbr_cli.output import audited, fail, settings_or_fail, table
from rbr_runtime.kafka.dead_letters import DeadLetter, read_dead_letters, replay_dead_letters
from rbr_runtime.settings import CommonSettings
from rbr_schemas import TOPICS, dlq_topic
from rbr_schemas.dlq import DLQ_SUFFIX

app = typer.Typer(help="Dead-letter topics: list and replay.", no_args_is_help=True)

TopicArgument = Annotated[
    str | None,
    typer.Argument(help="Source or dead-letter topic, e.g. logs.extracted (default: all)."),
]


def _dlq_name(topic: str) -> str:
    return topic if topic.endswith(DLQ_SUFFIX) else dlq_topic(topic)


def _read(settings: CommonSettings, topic: str) -> list[DeadLetter]:
    try:
        return read_dead_letters(settings, topic)
    except (LookupError, TimeoutError) as error:
        fail(f"{topic}: {error}")


@app.command("list")
def list_dead_letters(
    topic: TopicArgument = None,
    limit: Annotated[int, typer.Option(help="Show at most this many, newest last.")] = 50,
) -> None:
    """List dead letters: where they came from and why they were given up on."""
    settings = settings_or_fail(CommonSettings)
    if topic is None:
        rows = []
        for spec in TOPICS:
            letters = _read(settings, spec.dlq)
            reasons = Counter(d.reason.error_class if d.reason else "?" for d in letters)
            summary = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
            rows.append((spec.dlq, len(letters), summary))
        table(["dead-letter topic", "messages", "reasons"], rows)
        return
    letters = _read(settings, _dlq_name(topic))
    shown = letters[-limit:]
    table(
        ["failed at", "from", "group", "reason", "key", "error"],
        [_row(letter) for letter in shown],
    )
    typer.echo(f"{len(letters)} dead letter(s) on {_dlq_name(topic)}; {len(shown)} shown")


def _row(letter: DeadLetter) -> tuple[str, ...]:
    reason = letter.reason
    origin = (
        f"{letter.source_topic}[{reason.source_partition}]@{reason.source_offset}"
        if reason
        else "?"
    )
    return (
        reason.failed_at.isoformat(timespec="seconds") if reason else "?",
        origin,
        reason.consumer_group if reason else "?",
        reason.error_class if reason else "unreadable headers",
        letter.record.key_text or "",
        (reason.error if reason else "")[:120],
    )


@app.command()
def replay(
    topic: Annotated[str, typer.Argument(help="Source or dead-letter topic to replay.")],
    error_class: Annotated[
        str | None, typer.Option(help="Only dead letters with this reason (e.g. rejected).")
    ] = None,
    from_beginning: Annotated[
        bool, typer.Option(help="Start from the first dead letter, not the last replay.")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Show what would be replayed.")] = False,
) -> None:
    """Send dead letters back to their source topic; every consumer group sees them again.

    Consumers are idempotent, so a message that was processed meanwhile does no harm. Fix the
    cause first (see `rbr dlq list`), or the messages come straight back.
    """
    settings = settings_or_fail(CommonSettings)
    name = _dlq_name(topic)
    seen = [0]

    def progress(letter: DeadLetter, wanted: bool) -> None:
        seen[0] += 1
        if dry_run and wanted:
            typer.echo(f"would replay {letter.record.key_text} -> {letter.source_topic}")
        elif seen[0] % 100 == 0:
            typer.echo(f"... {seen[0]} dead letters read", err=True)

    try:
        report = replay_dead_letters(
            settings,
            name,
            error_class=error_class,
            from_beginning=from_beginning,
            dry_run=dry_run,
            progress=progress,
        )
    except Exception as error:  # noqa: BLE001 - the message says what failed and where
        fail(f"replay of {name} stopped: {type(error).__name__}: {error}")
    verb = "would replay" if dry_run else "replayed"
    targets = ", ".join(f"{n} to {t}" for t, n in report.by_topic.items()) or "nothing"
    typer.echo(f"{verb} {report.replayed} ({targets}); skipped {report.skipped}")
    if not dry_run:
        detail = {"replayed": report.replayed, "skipped": report.skipped}
        audited(settings, "dlq.replay", name, {**detail, "error_class": error_class})
