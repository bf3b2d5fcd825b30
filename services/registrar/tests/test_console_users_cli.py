"""`rbr users add|list|disable|enable` on the real database: accounts the console logs in with."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from rbr_cli.main import app
from rbr_registrar.console.accounts import Accounts
from rbr_runtime.db.tables import audit_log, operator_users
from rbr_testing.registry import database_url

PASSWORD = "a long enough password"


@pytest.fixture
def runner(mysql_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("RBR_DATABASE_URL", database_url(mysql_engine))
    return CliRunner()


def test_an_admin_is_added_listed_disabled_and_enabled(
    runner: CliRunner, mysql_engine: Engine
) -> None:
    added = runner.invoke(
        app, ["users", "add", "ada", "--role", "admin", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert added.exit_code == 0, added.output
    assert "ada: created (admin)" in added.output
    with mysql_engine.connect() as connection:
        stored = connection.execute(select(operator_users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    accounts = Accounts(mysql_engine)
    assert accounts.authenticate("ada", PASSWORD) is not None

    listed = runner.invoke(app, ["users", "list"])
    assert listed.exit_code == 0
    assert "ada" in listed.output
    assert "admin" in listed.output
    assert "enabled" in listed.output

    disabled = runner.invoke(app, ["users", "disable", "ada"])
    assert "ada: disabled (its sessions ended)" in disabled.output
    assert accounts.authenticate("ada", PASSWORD) is None
    assert "disabled" in runner.invoke(app, ["users", "list"]).output
    assert runner.invoke(app, ["users", "enable", "ada"]).exit_code == 0
    assert accounts.authenticate("ada", PASSWORD) is not None

    with mysql_engine.connect() as connection:
        actions = connection.execute(
            select(audit_log.c.action, audit_log.c.target).order_by(audit_log.c.id)
        ).all()
    assert [tuple(a) for a in actions] == [
        ("user.add", "ada"),
        ("user.disable", "ada"),
        ("user.enable", "ada"),
    ]


def test_bad_accounts_are_refused_with_a_reason(runner: CliRunner) -> None:
    def add(*args: str, password: str = PASSWORD) -> str:
        result = runner.invoke(
            app, ["users", "add", *args, "--password-stdin"], input=password + "\n"
        )
        assert result.exit_code != 0
        return result.output

    assert "at least 12 characters" in add("bob", password="short")
    assert "--role must be one of viewer, operator, admin" in add("bob", "--role", "root")
    assert "a user name is 1-64 letters" in add("<bob>")
    assert (
        runner.invoke(app, ["users", "add", "bob", "--password-stdin"], input=PASSWORD).exit_code
        == 0
    )
    assert "a user named bob exists already" in add("bob")
    missing = runner.invoke(app, ["users", "disable", "nobody"])
    assert missing.exit_code == 1
    assert "no console account named nobody" in missing.output


def test_the_password_is_asked_twice_when_not_piped(runner: CliRunner) -> None:
    result = runner.invoke(app, ["users", "add", "carl"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert "viewer" in runner.invoke(app, ["users", "list"]).output
