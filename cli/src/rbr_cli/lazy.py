"""Commands known by name and `module:attribute`, imported only when one is run.

`rbr --help` lists every command from placeholders whose help is read from the source (no
import); running a command imports its module, and nothing else's.
"""

from __future__ import annotations

import ast
import importlib
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any

import typer
from typer import _click  # this typer bundles its own click: its groups hold these commands
from typer._click.shell_completion import CompletionItem
from typer.core import TyperCommand, TyperGroup

_log = logging.getLogger(__name__)


class LazyCommand(TyperCommand):
    """A command not imported yet: its name, where it is defined, and its subcommands' sources.

    Attributes:
        target: where the command is defined, as an entry point names it (`module:attribute`).
        children: the sources of its subcommands, by name relative to it (`reseed`, `a.b`).
    """

    def __init__(self, name: str, target: str | None, children: Mapping[str, str]) -> None:
        super().__init__(name=name, callback=None)
        self.target = target
        self.children = dict(children)

    def load(self) -> _click.Command:
        """Imports the command and mounts its subcommands on it."""
        if self.target is None:  # only `NAME.SUB` commands were contributed: a group of them
            command: _click.Command = PluginGroup(name=self.name, no_args_is_help=True)
        else:
            command = mounted(self.name or "", _imported(self.target))
        attach(command, self.children)
        return command

    def describe(self) -> None:
        """Sets the help shown in listings, read from the source without importing it."""
        if self.help is None and self.target is not None:
            self.help = source_help(self.target)


class PluginGroup(TyperGroup):
    """A command group whose commands are imported when run, not when listed.

    Use it as `typer.Typer(cls=PluginGroup)` for a group that installed packages add `GROUP.NAME`
    commands to, so listing the group or running one of its own commands imports none of them.
    """

    listing = False

    def add_sources(self, sources: Mapping[str, str]) -> None:
        """Adds commands by name and `module:attribute`; `GROUP.NAME` adds one to a subgroup.

        A command the group has already (e.g. a built-in) keeps its place.
        """
        for name, (target, children) in by_root(sources).items():
            existing = self.commands.get(name)
            if existing is None:
                self.commands[name] = LazyCommand(name, target, children)
            else:
                attach(existing, children)

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        """Returns a command, importing it first unless the group is only being listed."""
        command = self.commands.get(cmd_name)
        if not isinstance(command, LazyCommand) or self.listing:
            return command
        loaded = command.load()
        self.commands[cmd_name] = loaded
        return loaded

    def format_help(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        """Writes the help, listing commands not imported yet by their placeholders."""
        for command in self.commands.values():
            if isinstance(command, LazyCommand):
                command.describe()
        with self._listed():
            super().format_help(ctx, formatter)

    def shell_complete(self, ctx: _click.Context, incomplete: str) -> list[CompletionItem]:
        """Completes command names from the placeholders too (importing none)."""
        with self._listed():
            return super().shell_complete(ctx, incomplete)

    @contextmanager
    def _listed(self) -> Iterator[None]:
        self.listing = True
        try:
            yield
        finally:
            self.listing = False


def by_root(sources: Mapping[str, str]) -> dict[str, tuple[str | None, dict[str, str]]]:
    """Groups dotted names by their first part: `{"a": t, "a.b": u}` -> `{"a": (t, {"b": u})}`."""
    grouped: dict[str, tuple[str | None, dict[str, str]]] = {}
    for name in sorted(sources):
        root, _, rest = name.partition(".")
        target, children = grouped.get(root, (None, {}))
        if rest:
            children[rest] = sources[name]
        grouped[root] = (sources[name] if not rest else target, children)
    return grouped


def attach(command: _click.Command, children: Mapping[str, str]) -> None:
    """Adds subcommands to a loaded command: lazily to a `PluginGroup`, else imported now."""
    if not children:
        return
    if isinstance(command, LazyCommand):
        command.children = {**children, **command.children}
    elif isinstance(command, PluginGroup):
        command.add_sources(children)
    elif isinstance(command, TyperGroup):
        for name, (target, grandchildren) in by_root(children).items():
            command.add_command(LazyCommand(name, target, grandchildren).load(), name)
    else:
        _log.warning("%s is not a group: its subcommands %s are left out", command.name, children)


def mounted(name: str, command: Any) -> _click.Command:
    """Returns a typer app or function as the command `add_typer`/`command` would mount."""
    if isinstance(command, _click.Command):
        return command
    host = typer.Typer()
    if isinstance(command, typer.Typer):  # a PluginGroup unless the app chose its own class
        host.add_typer(command, name=name, cls=PluginGroup)
    else:
        host.command(name)(command)
    return typer.main.get_group(host).commands[name]


def _imported(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as error:  # e.g. an image without the package's optional dependencies
        raise _click.ClickException(f"{target} cannot be imported: {error}") from error
    for part in attribute.split("."):
        found = getattr(found, part)
    return found


def source_help(target: str) -> str | None:
    """Returns a command's help from its source: a function's docstring, a `Typer(help=...)`.

    Reads the module's file without importing it (or its package). None when not found.
    """
    module_name, _, attribute = target.partition(":")
    path = _source_file(module_name)
    if path is None:
        return None
    return _help_in(_parsed(path), attribute.split(".")[0])


def _source_file(module_name: str) -> Path | None:
    spec = None
    search: list[str] | None = None
    parts = module_name.split(".")
    for depth in range(len(parts)):
        spec = PathFinder.find_spec(".".join(parts[: depth + 1]), search)
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or [])
    origin = spec.origin if spec is not None else None
    return Path(origin) if origin and origin.endswith(".py") else None


@cache
def _parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_bytes(), filename=str(path))


def _help_in(module: ast.Module, name: str) -> str | None:
    for node in module.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return ast.get_docstring(node)
        value = _assigned(node, name)
        if isinstance(value, ast.Call):
            return _help_keyword(value)
    return None


def _assigned(node: ast.stmt, name: str) -> ast.expr | None:
    if isinstance(node, ast.Assign) and any(
        isinstance(target, ast.Name) and target.id == name for target in node.targets
    ):
        return node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.value if node.target.id == name else None
    return None


def _help_keyword(call: ast.Call) -> str | None:
    for keyword in call.keywords:
        if keyword.arg == "help" and isinstance(keyword.value, ast.Constant):
            return str(keyword.value.value)
    return None
