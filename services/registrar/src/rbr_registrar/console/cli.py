"""`rbr users add|list|disable|enable`: the console's operator accounts.

Works on the database directly (RBR_DATABASE_URL), so the first administrator can be made
before anyone can log in. Passwords are read from a prompt or from standard input, never from
the command line (where `ps` and shell history would show them).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from rbr_registrar.console.accounts import Accounts

app = typer.Typer(help="Operator accounts of the web console.", no_args_is_help=True)
ROLES = ("viewer", "operator", "admin")


@contextmanager
def _accounts() -> Iterator[Accounts]:
    # Imported here: `rbr --help` must not import the database stack.
    from rbr_cli.output import settings_or_fail  # noqa: PLC0415
    from rbr_registrar.console.accounts import Accounts  # noqa: PLC0415
    from rbr_runtime.db.engine import make_engine  # noqa: PLC0415
    from rbr_runtime.settings import CommonSettings  # noqa: PLC0415

    engine = make_engine(settings_or_fail(CommonSettings).database_url)
    try:
        yield Accounts(engine)
    finally:
        engine.dispose()


def _audit(accounts: Accounts, action: str, target: str, detail: dict[str, str]) -> None:
    """Writes the change to the audit log, as made by the local user through the CLI."""
    from rbr_registrar.operator.audit import record_audit  # noqa: PLC0415
    from rbr_registrar.operator.auth import Actor, Role  # noqa: PLC0415
    from rbr_runtime.db.audit import cli_actor  # noqa: PLC0415

    actor = Actor(cli_actor(), Role.ADMIN)
    record_audit(accounts.engine, actor, action, target, "done", detail=detail)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    return password


@app.command("add")
def add_user(
    name: Annotated[str, typer.Argument(help="The user name (letters, digits, . _ @ -).")],
    role: Annotated[
        str, typer.Option(help="viewer (reads), operator (also changes), admin (also exports).")
    ] = "viewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a console account (the password is asked for, or read with --password-stdin)."""
    from rbr_registrar.console.accounts import AccountError, Role  # noqa: PLC0415

    if role not in ROLES:
        _fail(f"--role must be one of {', '.join(ROLES)}", 2)
    password = _read_password(password_stdin)
    with _accounts() as accounts:
        try:
            user = accounts.add(name, password, Role(role))
        except AccountError as error:
            _fail(str(error))
        _audit(accounts, "user.add", user.name, {"role": user.role.value})
    typer.echo(f"{user.name}: created ({user.role.value})")


@app.command("list")
def list_users() -> None:
    """List the console accounts."""
    from rbr_cli.output import table  # noqa: PLC0415

    with _accounts() as accounts:
        users = accounts.list()
    if not users:
        typer.echo("no console accounts yet: `rbr users add NAME --role admin` makes one")
        return
    table(
        ["name", "role", "state", "created"],
        [
            [
                u.name,
                u.role.value,
                "disabled" if u.disabled else "enabled",
                f"{u.created_at:%Y-%m-%d %H:%M}",
            ]
            for u in users
        ],
    )


def _set_disabled(name: str, disabled: bool) -> None:
    word = "disabled" if disabled else "enabled"
    with _accounts() as accounts:
        if not accounts.set_disabled(name, disabled):
            _fail(f"no console account named {name}; `rbr users list` shows them")
        _audit(accounts, f"user.{'disable' if disabled else 'enable'}", name, {})
    typer.echo(f"{name}: {word}" + (" (its sessions ended)" if disabled else ""))


@app.command("disable")
def disable_user(name: Annotated[str, typer.Argument(help="The user name.")]) -> None:
    """Disable a console account: it can no longer log in and its sessions end at once."""
    _set_disabled(name, True)


@app.command("enable")
def enable_user(name: Annotated[str, typer.Argument(help="The user name.")]) -> None:
    """Enable a disabled console account again."""
    _set_disabled(name, False)
