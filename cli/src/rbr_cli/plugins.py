"""What the installed packages contribute to the CLI, through entry points.

* `rbr.commands`: a typer-annotated function (mounted as a command) or a `typer.Typer`
  (mounted as a command group), e.g. `simulate`, `notify`, `buckets`; a name `GROUP.NAME`
  adds a command to a group, e.g. `topics.reseed` (`rbr topics reseed`), and makes the group
  when no package has it. Nothing is imported until the command runs (`rbr_cli.lazy`);
  `rbr --help` shows a function's docstring or a `typer.Typer(help=...)` read from the source;
* `rbr.tasks`: a function with no arguments that runs one cycle of a scheduled task and
  returns a one-line summary, e.g. `pull_updates`, `cleanup` (`rbr run-task NAME`);
* `rbr.services`: a service's `main` function, started by `rbr stack` (`make run`).

So a service brings its own commands, and the CLI works in any image whatever is installed.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points

COMMANDS_GROUP = "rbr.commands"
TASKS_GROUP = "rbr.tasks"
SERVICES_GROUP = "rbr.services"


def discovered(group: str) -> dict[str, EntryPoint]:
    """Returns the entry points of a group by name."""
    return {entry.name: entry for entry in entry_points(group=group)}


def command_sources() -> dict[str, str]:
    """Returns the installed packages' commands: name to `module:attribute`."""
    return {name: entry.value for name, entry in discovered(COMMANDS_GROUP).items()}


def task_names() -> list[str]:
    """Returns the names of the tasks `rbr run-task` can run."""
    return sorted(discovered(TASKS_GROUP))


def load_task(name: str) -> Callable[[], str]:
    """Loads a task by name.

    Raises:
        KeyError: no installed package provides the task.
    """
    tasks = discovered(TASKS_GROUP)
    if name not in tasks:
        known = ", ".join(sorted(tasks)) or "none installed"
        raise KeyError(f"unknown task {name!r}; known tasks: {known}")
    task: Callable[[], str] = tasks[name].load()
    return task
