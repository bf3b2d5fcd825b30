"""`rbr` lists every installed command without importing it, and runs each when asked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rbr_cli.lazy import source_help
from rbr_cli.main import BUILT_IN, app
from rbr_cli.plugins import command_sources

runner = CliRunner()

# A package as another engineer would ship one: only its entry points, no registration in rbr.
PLUGIN_MODULE = '''
"""A plugin of rbr commands."""
import typer

gizmos = typer.Typer(help="Search the gizmos.", no_args_is_help=True)


@gizmos.command("search")
def search(text: str) -> None:
    """Find gizmos."""
    typer.echo(f"searching {text}")


def count(kind: str = "all") -> None:
    """Count the widgets of a kind."""
    typer.echo(f"{kind}: 3 widgets")


def tail() -> None:
    """Follow the gizmos."""
    typer.echo("tailing")
'''
PLUGIN_ENTRY_POINTS = """[rbr.commands]
gizmos = rbr_fake_plugin:gizmos
gizmos.tail = rbr_fake_plugin:tail
widgets.count = rbr_fake_plugin:count
"""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Installs a package with `gizmos` (a group), `gizmos.tail` and `widgets.count` on sys.path."""
    (tmp_path / "rbr_fake_plugin.py").write_text(PLUGIN_MODULE)
    info = tmp_path / "rbr_fake_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rbr-fake-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(PLUGIN_ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "rbr_fake_plugin", raising=False)


def command_names(help_text: str) -> set[str]:
    """Returns the first word of each row of the help's command panel."""
    rows = help_text.rsplit("Commands", maxsplit=1)[-1].splitlines()
    return {row.strip("│ ").split(" ")[0] for row in rows if row.startswith("│ ") and row[2] != " "}


def test_help_lists_every_installed_and_built_in_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    installed = {name.partition(".")[0] for name in command_sources()}
    assert installed >= {"buckets", "sources", "notify", "alerts", "iocs", "simulate", "topics"}
    assert command_names(result.output) >= installed | set(BUILT_IN)
    assert "List and manage registered buckets" in result.output  # help read from the source
    assert "Show broker, database and S3 reachability" in result.output


def test_help_imports_no_command_and_no_client_library() -> None:
    script = (
        "import sys\n"
        "from rbr_cli.main import app\n"
        "try:\n"
        "    app(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    modules = set(done.stderr.split())
    commands = {target.partition(":")[0] for target in command_sources().values()}
    commands |= {target.partition(":")[0] for target in BUILT_IN.values()}
    assert not modules & commands
    assert not modules & {"sqlalchemy", "boto3", "confluent_kafka", "httpx", "alembic"}
    assert "Commands" in done.stdout


def test_a_group_lists_the_commands_packages_add_to_it() -> None:
    result = runner.invoke(app, ["topics", "--help"])
    assert result.exit_code == 0, result.output
    assert {"create", "list", "describe", "reseed", "announce-objects"} <= command_names(
        result.output
    )


def test_a_group_name_command_of_another_package_runs() -> None:
    result = runner.invoke(app, ["topics", "reseed", "--help"])
    assert result.exit_code == 0, result.output
    assert "--dry-run" in result.output
    assert "Publish bucket.registered again" in result.output


def test_a_built_in_command_runs() -> None:
    result = runner.invoke(app, ["run-task", "--list"])
    assert result.exit_code == 0, result.output
    assert {"pull_updates", "extract_logs", "cleanup"} <= set(result.output.split())


def test_a_group_of_another_package_runs_its_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RBR_REGISTRAR_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("RBR_OPERATOR_KEY", "k" * 32)
    result = runner.invoke(app, ["buckets", "list"])
    assert result.exit_code == 1
    assert "127.0.0.1:9" in result.output


def test_unknown_command_is_refused_with_a_suggestion() -> None:
    result = runner.invoke(app, ["bucket"])
    assert result.exit_code == 2
    assert "No such command 'bucket'" in result.output
    assert "buckets" in result.output


@pytest.mark.usefixtures("plugin")
def test_a_new_package_s_commands_need_no_registration() -> None:
    listed = runner.invoke(app, ["--help"])
    assert {"gizmos", "widgets"} <= command_names(listed.output)
    assert "Search the gizmos." in listed.output
    assert "rbr_fake_plugin" not in sys.modules

    group = runner.invoke(app, ["gizmos", "--help"])
    assert {"search", "tail"} <= command_names(group.output)
    assert "Follow the gizmos." in group.output

    assert runner.invoke(app, ["gizmos", "search", "root"]).output == "searching root\n"
    assert runner.invoke(app, ["gizmos", "tail"]).output == "tailing\n"
    # `widgets.count` with no `widgets` group anywhere: the group is made for it.
    assert runner.invoke(app, ["widgets", "count", "--kind", "blue"]).output == "blue: 3 widgets\n"


def test_help_is_read_from_functions_and_typer_apps() -> None:
    assert source_help("rbr_cli.status_commands:status") == (
        "Show broker, database and S3 reachability and the consumer lag of every group."
    )
    assert source_help("rbr_cli.db_commands:app") == "Database migrations."
    assert source_help("rbr_cli.no_such_module:app") is None
    assert source_help("rbr_cli.db_commands:no_such_name") is None


def test_a_command_whose_module_is_missing_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "rbr_broken_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rbr-broken-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[rbr.commands]\nbroken = rbr_no_such_module:app\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    assert "broken" in command_names(runner.invoke(app, ["--help"]).output)
    result = runner.invoke(app, ["broken"])
    assert result.exit_code == 1
    assert "rbr_no_such_module:app cannot be imported" in result.output
    assert runner.invoke(app, ["run-task", "--list"]).exit_code == 0
