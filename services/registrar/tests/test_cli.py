"""`rbr buckets ...` against a running registrar."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from rbr_cli.main import app
from rbr_testing.registry import TEST_OPERATOR_KEY, RegistrarFactory

TOKEN = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"


def test_operator_lists_approves_disables_and_removes_from_the_command_line(
    registrar_factory: RegistrarFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    registrar = registrar_factory()
    name = "rustbucket-cl1test0"
    with registrar.client() as client:
        client.post(
            "/register_bucket",
            json={
                "name": name,
                "ip_address": "127.0.0.1",
                "operating_system": "linux",
                "token": TOKEN,
                "port": 8443,
            },
        )
    runner = CliRunner()
    monkeypatch.setenv("RBR_REGISTRAR_URL", registrar.url)
    monkeypatch.setenv("RBR_OPERATOR_KEY", TEST_OPERATOR_KEY)

    listed = runner.invoke(app, ["buckets", "list", "--state", "pending"])
    assert listed.exit_code == 0, listed.output
    assert name in listed.output
    assert "127.0.0.1:8443" in listed.output
    assert "never" in listed.output

    approved = runner.invoke(app, ["buckets", "approve", name])
    assert approved.exit_code == 0
    assert f"{name}: updated (state active)" in approved.output
    assert (
        "no buckets in state pending"
        in runner.invoke(app, ["buckets", "list", "--state", "pending"]).output
    )
    shown = runner.invoke(app, ["buckets", "show", name])
    assert "state              active" in shown.output

    assert "state disabled" in runner.invoke(app, ["buckets", "disable", name]).output
    removed = runner.invoke(app, ["buckets", "remove", name, "--yes"])
    assert f"{name}: removed" in removed.output

    missing = runner.invoke(app, ["buckets", "approve", name])
    assert missing.exit_code == 1
    assert f"404: no bucket named {name}" in missing.output
    assert "`rbr buckets list` shows the registered names" in missing.output

    monkeypatch.setenv("RBR_OPERATOR_KEY", "wrong")
    refused = runner.invoke(app, ["buckets", "list"])
    assert refused.exit_code == 1
    assert "operator key not accepted" in refused.output

    monkeypatch.setenv("RBR_REGISTRAR_URL", "http://127.0.0.1:9")
    unreachable = runner.invoke(app, ["buckets", "list"])
    assert unreachable.exit_code == 1
    assert "cannot reach the registrar at http://127.0.0.1:9" in unreachable.output


def test_operator_approves_every_pending_bucket_at_once(
    registrar_factory: RegistrarFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    registrar = registrar_factory()
    names = ["rustbucket-cl1all00", "rustbucket-cl1all01"]
    with registrar.client() as client:
        for name in names:
            payload = {"ip_address": "127.0.0.1", "operating_system": "linux", "token": TOKEN}
            assert client.post("/register_bucket", json={**payload, "name": name}).is_success
    runner = CliRunner()
    monkeypatch.setenv("RBR_REGISTRAR_URL", registrar.url)
    monkeypatch.setenv("RBR_OPERATOR_KEY", TEST_OPERATOR_KEY)

    approved = runner.invoke(app, ["buckets", "approve", "--all-pending"])
    assert approved.exit_code == 0, approved.output
    for name in names:
        assert f"{name}: updated (state active)" in approved.output
    listed = runner.invoke(app, ["buckets", "list", "--state", "active"]).output
    assert all(name in listed for name in names)
    again = runner.invoke(app, ["buckets", "approve", "--all-pending"])
    assert "no buckets in state pending" in again.output
    assert runner.invoke(app, ["buckets", "approve"]).exit_code == 2


def test_operator_rekeys_every_bucket_from_the_command_line(
    registrar_factory: RegistrarFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = {"ip_address": "127.0.0.1", "operating_system": "linux", "token": TOKEN}
    lost = registrar_factory(secret_key="lost-key")
    with lost.client() as client:
        client.post("/register_bucket", json={**payload, "name": "rustbucket-cl1l0st0"})
    lost.handle.stop()
    before = registrar_factory(secret_key="old-key")
    with before.client() as client:
        for name in ("rustbucket-cl1rk000", "rustbucket-cl1rk001", "rustbucket-cl1rk002"):
            assert client.post("/register_bucket", json={**payload, "name": name}).is_success
    before.handle.stop()
    registrar = registrar_factory(secret_key="new-key,old-key")
    runner = CliRunner()
    monkeypatch.setenv("RBR_REGISTRAR_URL", registrar.url)
    monkeypatch.setenv("RBR_OPERATOR_KEY", TEST_OPERATOR_KEY)

    dry = runner.invoke(app, ["buckets", "rekey", "--dry-run", "--batch", "2"])
    assert dry.exit_code == 1, dry.output
    assert "... 2 checked" in dry.output, "progress between pages"
    assert "4 checked: 3 still under an older key, 0 current, 1 undecryptable" in dry.output
    assert "rustbucket-cl1l0st0" in dry.output

    done = runner.invoke(app, ["buckets", "rekey", "--batch", "2"])
    assert done.exit_code == 1, done.output
    assert "4 checked: 3 re-keyed, 0 already current, 1 undecryptable" in done.output
    assert "rustbucket-cl1l0st0" in done.output
    assert TOKEN not in done.output

    assert runner.invoke(app, ["buckets", "remove", "rustbucket-cl1l0st0", "--yes"]).exit_code == 0
    status = runner.invoke(app, ["buckets", "rekey", "--dry-run"])
    assert status.exit_code == 0, status.output
    assert "3 checked: 0 still under an older key, 3 current, 0 undecryptable" in status.output
    assert "older keys can be dropped" in status.output
    again = runner.invoke(app, ["buckets", "rekey"])
    assert again.exit_code == 0, again.output
    assert "3 checked: 0 re-keyed, 3 already current" in again.output
