"""`rbr analyses`, `rbr logs`, `rbr alerts`, `rbr channels`, `rbr audit` and bulk bucket commands.

Against a running registrar; rows of the other services' tables are inserted as they write them.
"""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner, Result

from rbr_cli.main import app
from rbr_runtime.db.tables import alerts
from rbr_testing.operator_rows import put_alerts, put_analyses, put_logs
from rbr_testing.registry import TEST_OPERATOR_KEY, RegistrarFactory

TOKEN = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"


@pytest.fixture
def rbr(registrar_factory: RegistrarFactory, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    registrar = registrar_factory()
    with registrar.client() as client:
        for number, name in enumerate(["web-1", "web-2", "db-1"]):
            body = {
                "name": name,
                "ip_address": "127.0.0.1",
                "operating_system": "linux",
                "token": TOKEN[:-1] + str(number),
            }
            assert client.post("/register_bucket", json=body).is_success
    monkeypatch.setenv("RBR_REGISTRAR_URL", registrar.url)
    monkeypatch.setenv("RBR_OPERATOR_KEY", TEST_OPERATOR_KEY)
    return CliRunner()


def run(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(app, list(args))


def test_buckets_are_approved_by_names_and_by_filter(rbr: CliRunner) -> None:
    listed = run(rbr, "buckets", "list", "--prefix", "web-")
    assert ("web-1" in listed.output, "web-2" in listed.output) == (True, True)
    assert "db-1" not in listed.output
    named = run(rbr, "buckets", "approve", "web-1", "nope")
    assert named.exit_code == 1
    assert "web-1: updated (state active)" in named.output
    assert "nope: not_found: no bucket named nope" in named.output
    filtered = run(rbr, "buckets", "disable", "--prefix", "web-")
    assert filtered.exit_code == 0, filtered.output
    assert "web-1: updated (state disabled)" in filtered.output
    assert "web-2: updated (state disabled)" in filtered.output
    assert "db-1" not in filtered.output
    assert "no buckets match" in run(rbr, "buckets", "approve", "--prefix", "zzz").output
    removed = run(rbr, "buckets", "remove", "--state", "disabled", "--yes")
    assert removed.output.count(": removed") == 2
    both = run(rbr, "buckets", "approve", "db-1", "--state", "pending")
    assert both.exit_code == 2


def test_analyses_and_logs_are_read_from_the_command_line(
    rbr: CliRunner, mysql_engine: Engine
) -> None:
    put_analyses(mysql_engine)
    put_logs(mysql_engine)
    listed = run(rbr, "analyses", "list", "--bucket", "rustbucket-a")
    assert listed.exit_code == 0, listed.output
    assert listed.output.count("rustbucket-a") == 2
    analysis_id = listed.output.splitlines()[1].split()[0]
    shown = run(rbr, "analyses", "show", analysis_id)
    assert "recommended actions:" in shown.output
    assert "Block 198.51.100.1" in shown.output
    assert "\x1b" not in shown.output  # hostile text cannot drive the terminal
    assert "<script>alert(1)</script>?[31m" in shown.output

    recent = run(rbr, "logs", "search", "--command", "bot.sh")
    assert "searching the last 24 hours: give --since" in recent.output
    assert "no log records match" in recent.output  # they were stored in 2026-11
    found = run(rbr, "logs", "search", "--command", "bot.sh", "--since", "2026-11-01")
    assert found.exit_code == 0, found.output
    assert "wget http://x/bot.sh" in found.output
    assert len(found.output.splitlines()) == 2
    hostile = run(rbr, "logs", "search", "--source-ip", "2001:db8::1", "--json")
    assert '"log": "hostile <script>alert(1)</script>\\u001b[31m"' in hostile.output
    bad = run(rbr, "logs", "search", "--source-ip", "nope")
    assert bad.exit_code == 1
    assert "source_ip: must be an IPv4 or IPv6 address" in bad.output


def test_alerts_are_shown_whole_acknowledged_and_resolved(
    rbr: CliRunner, mysql_engine: Engine
) -> None:
    put_alerts(mysql_engine)
    listed = run(rbr, "alerts", "list", "--state", "firing")
    assert listed.exit_code == 0, listed.output
    assert "a1" in listed.output
    assert "a2" not in listed.output

    shown = run(rbr, "alerts", "show", "bucket_unresponsive:a1")
    assert shown.exit_code == 0, shown.output
    assert "The whole text of a1: no answer for 15 minutes." in shown.output
    assert "repeated" in shown.output
    assert "pager" in shown.output
    assert "slack-ops" in shown.output
    assert "attempts:" in shown.output

    acked = run(rbr, "alerts", "ack", "a1")
    assert "a1: acknowledged" in acked.output
    with mysql_engine.connect() as connection:
        state = connection.execute(select(alerts.c.state).where(alerts.c.alert_id == "a1"))
        assert state.scalar_one() == "acknowledged"
    assert "a1: unchanged" in run(rbr, "alerts", "ack", "a1").output
    resolved = run(rbr, "alerts", "resolve", "bucket_unresponsive:a1")
    assert "a1: queued" in resolved.output
    none_open = run(rbr, "alerts", "ack", "bucket_unresponsive:a2")
    assert none_open.exit_code == 1
    assert "no firing alert with dedupe key bucket_unresponsive:a2" in none_open.output

    audit = run(rbr, "audit", "list", "--action", "alert.acknowledge")
    assert "operator-key" in audit.output
    exported = run(rbr, "audit", "export", "--format", "csv")
    actions = [row["action"] for row in csv.DictReader(io.StringIO(exported.output))]
    assert actions == ["alert.resolve", "alert.acknowledge", "alert.acknowledge"]


def test_a_channel_test_is_queued_and_channels_are_listed(
    rbr: CliRunner, mysql_engine: Engine
) -> None:
    put_alerts(mysql_engine)
    queued = run(rbr, "channels", "test", "slack-ops", "--wait", "0")
    assert queued.exit_code == 0, queued.output
    assert "queued for slack-ops" in queued.output
    listed = run(rbr, "channels", "list")
    assert "pager" in listed.output
    assert "failed" in listed.output
