"""`rbr run-task NAME` and `rbr run-task --list`: one cycle of a scheduled task, by hand."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from rbr_cli.output import fail
from rbr_cli.plugins import load_task, task_names


def run_task(
    name: Annotated[str | None, typer.Argument(help="Task to run; see --list.")] = None,
    list_tasks: Annotated[bool, typer.Option("--list", help="List the tasks.")] = False,
) -> None:
    """Run one cycle of a scheduled task now (pull_updates, extract_logs, cleanup, ...)."""
    if list_tasks or name is None:
        names = task_names()
        typer.echo("\n".join(names) if names else "no tasks installed")
        return
    try:
        task = load_task(name)
    except KeyError as error:
        fail(str(error.args[0]))
    started = time.monotonic()
    typer.echo(f"running {name} ...", err=True)
    try:
        summary = task()
    except Exception as error:  # noqa: BLE001 - report any failure of the task and exit 1
        fail(f"{name} failed: {type(error).__name__}: {error}")
    typer.echo(f"{name}: {summary} ({time.monotonic() - started:.1f}s)")
