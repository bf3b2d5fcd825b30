"""Printing for the CLI: plain text on stdout, errors on stderr, clear exit codes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import typer

from rbr_runtime.settings import CommonSettings, ConfigError, SettingsT, load_settings


def fail(message: str, code: int = 1) -> NoReturn:
    """Prints an error and exits."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def settings_or_fail(settings_cls: type[SettingsT]) -> SettingsT:
    """Loads settings from the environment, or exits naming the bad variables."""
    try:
        return load_settings(settings_cls)
    except ConfigError as error:
        fail(str(error), code=2)


def audited(settings: CommonSettings, action: str, target: str, detail: Mapping[str, Any]) -> None:
    """Writes a change the CLI made (not through the operator API) to the audit log.

    The change is made already: a database that cannot take the entry gets a warning.
    """
    from rbr_runtime.db.audit import audit_cli_change  # noqa: PLC0415 - keeps rbr fast

    error = audit_cli_change(settings.database_url, action, target, detail)
    if error is not None:
        typer.secho(
            f"warning: done, but not written to the audit log: {error}",
            fg=typer.colors.YELLOW,
            err=True,
        )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Prints rows as aligned columns."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
