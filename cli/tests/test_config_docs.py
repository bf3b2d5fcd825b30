"""`rbr config` lists every setting, and docs/configuration.md holds its current output."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rbr_cli import config_commands
from rbr_cli.config_commands import CONFIGURATION_DOC, markdown, with_reference
from rbr_cli.main import app
from rbr_parser.settings import ParserSettings
from rbr_runtime.settings import CommonSettings

runner = CliRunner()


def test_configuration_reference_is_up_to_date() -> None:
    text = CONFIGURATION_DOC.read_text()
    assert with_reference(text) == text, "run `make docs`"


def test_write_docs_rewrites_only_the_generated_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(
        "# Written by hand\n\n<!-- config-reference:start -->\n"
        "| `RBR_REMOVED_LONG_AGO` | `1` | gone |\n<!-- config-reference:end -->\n\nAfter.\n"
    )
    monkeypatch.setattr(config_commands, "CONFIGURATION_DOC", stale)

    result = runner.invoke(app, ["config", "--write-docs"])

    assert result.exit_code == 0, result.output
    text = stale.read_text()
    assert text.startswith("# Written by hand\n")
    assert text.endswith("\n\nAfter.\n")
    assert "RBR_REMOVED_LONG_AGO" not in text
    assert markdown() in text


def test_write_docs_refuses_a_document_without_markers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unmarked = tmp_path / "configuration.md"
    unmarked.write_text("# No reference here\n")
    monkeypatch.setattr(config_commands, "CONFIGURATION_DOC", unmarked)

    result = runner.invoke(app, ["config", "--write-docs"])

    assert result.exit_code == 1
    assert "config-reference:start" in result.output
    assert unmarked.read_text() == "# No reference here\n"


def test_reference_names_the_design_variables() -> None:
    reference = markdown()
    for variable in (
        "RBR_KAFKA_BOOTSTRAP",
        "RBR_DATABASE_URL",
        "RBR_S3_ENDPOINT_URL",
        "RBR_S3_BUCKET",
    ):
        assert f"`{variable}`" in reference


def test_values_hide_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RBR_DATABASE_URL", "mysql+pymysql://rbr:hunter2@db/rbr")
    monkeypatch.setenv("RBR_KAFKA_BOOTSTRAP", "kafka-1:9092")
    monkeypatch.setenv("RBR_KAFKA_CLIENT_CONFIG", '{"sasl.password": "TOPSECRETPW"}')
    result = runner.invoke(app, ["config", "--values"])
    assert result.exit_code == 0, result.output
    assert "kafka-1:9092" in result.output
    assert "hunter2" not in result.output
    assert "TOPSECRETPW" not in result.output


def _section(reference: str, title: str) -> str:
    return reference.split(f"**{title}**", 1)[1].split("\n**", 1)[0]


def test_a_service_overriding_a_shared_default_lists_its_own_value() -> None:
    reference = markdown()
    own_default = ParserSettings.model_fields["consumer_batch_size"].default
    assert own_default != CommonSettings.model_fields["consumer_batch_size"].default
    assert f"| `RBR_CONSUMER_BATCH_SIZE` | `{own_default}` |" in _section(reference, "parser")
    # Services that keep the shared default do not repeat it.
    for title in ("poller", "notifier"):
        assert "RBR_CONSUMER_BATCH_SIZE" not in _section(reference, title)
        assert "RBR_KAFKA_MAX_POLL_INTERVAL_MS" not in _section(reference, title)
