"""`rbr status` (and `rbr topics`) name what is unreachable, and why, without waiting on it."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from rbr_cli.main import app
from rbr_runtime.kafka.probe import bootstrap_addresses
from rbr_testing.broker import free_port

runner = CliRunner()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a wrong port, a stuck server)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def rows(output: str) -> dict[str, str]:
    """Returns the status table's lines by component."""
    return {line.split()[0]: line for line in output.splitlines() if line.strip()}


def test_unreachable_broker_and_s3_are_named_and_the_database_checked(
    monkeypatch: pytest.MonkeyPatch, mysql_database_url: str
) -> None:
    broker_port, s3_port = free_port(), free_port()
    monkeypatch.setenv("RBR_KAFKA_BOOTSTRAP", f"127.0.0.1:{broker_port}")
    monkeypatch.setenv("RBR_DATABASE_URL", mysql_database_url)
    monkeypatch.setenv("RBR_S3_ENDPOINT_URL", f"http://127.0.0.1:{s3_port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")

    result = runner.invoke(app, ["status"])

    assert result.exit_code == 1
    table = rows(result.output)
    assert "FAIL" in table["broker"]
    assert (
        f"cannot connect to the broker at 127.0.0.1:{broker_port} (Connection refused)"
        in (table["broker"])
    )
    assert " ok " in table["database"]
    assert "schema at" in table["database"]
    assert "FAIL" in table["s3"]
    assert f"127.0.0.1:{s3_port}" in table["s3"]
    assert "consumer group" not in result.output  # no lag without a broker


def test_unreachable_database_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("RBR_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("RBR_DATABASE_URL", f"mysql+pymysql://rbr:s3cret-pw@127.0.0.1:{port}/rbr")

    result = runner.invoke(app, ["status", "--no-lag"])

    assert result.exit_code == 1
    database = rows(result.output)["database"]
    assert "FAIL" in database
    assert "Can't connect to MySQL server" in database
    assert "s3cret-pw" not in result.output  # the URL is shown without its password


def test_a_port_that_never_answers_is_reported_within_the_timeout(
    monkeypatch: pytest.MonkeyPatch, silent_port: int
) -> None:
    monkeypatch.setenv("RBR_KAFKA_BOOTSTRAP", f"127.0.0.1:{silent_port}")

    result = runner.invoke(app, ["status", "--timeout", "0.5"])

    assert result.exit_code == 1
    broker = rows(result.output)["broker"]
    assert "FAIL" in broker
    assert "accepts connections but answered no metadata request within 0.5s" in broker


def test_bootstrap_addresses_of_every_form() -> None:
    assert bootstrap_addresses("a:9093, SSL://[::1]:9094,b") == [
        ("a", 9093),
        ("::1", 9094),
        ("b", 9092),
    ]


def test_topics_list_names_an_unreachable_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("RBR_KAFKA_BOOTSTRAP", f"127.0.0.1:{port}")

    result = runner.invoke(app, ["topics", "list"])

    assert result.exit_code == 1
    assert f"cannot connect to the broker at 127.0.0.1:{port} (Connection refused)" in (
        result.output
    )
