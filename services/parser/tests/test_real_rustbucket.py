"""A real rustbucket's files through the parser service into MariaDB: its token stored nowhere."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from rbr_parser.main import build_service
from rbr_parser.settings import ParserSettings
from rbr_runtime.db.tables import logs
from rbr_schemas import LOGS_PARSED
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events
from rbr_testing.rustbucket_logs import Layout, RustbucketLog
from rbr_testing.services import running

TOKEN = "W2xR7kP4nQ9sV1tY6zB3cD8fG5hJ0mL2"  # the honeypot's registration token
NAME = "rustbucket-P0aZ7mWq"


def honeypot_files(directory: Path, layout: Layout) -> bytes:
    """What one honeypot of this layout writes on one start and a few sessions."""
    log = RustbucketLog(directory, "rustbucket-k3Vb9QzA", layout)
    at = log.start(
        datetime(2025, 12, 12, 9, tzinfo=UTC),
        registry_url="https://registry.example.net/api/register",
        registered_name=NAME,
        token=TOKEN,
        registration_status=422,
        registry_answer=f'{{"name":"{NAME}","token":"{TOKEN}"}}',
    )
    at = log.ssh_session(
        at,
        ip="203.0.113.9",
        port=51234,
        username="root",
        password="hunter2",
        commands=[("uname -a", "native"), ("python3 -c x", "llm")],
    )
    at = log.ftp_session(at, ip="198.51.100.4", port=4000, username="admin", password="admin")
    log.http_request(at, ip="198.51.100.6", port=4002, request="GET /.env HTTP/1.1\r\n\r\n")
    return b"".join(path.read_bytes() for path in log.written)


def test_a_real_honeypots_rows_are_parsed_and_hold_its_token_in_no_column(
    settings: ParserSettings,
    mysql_engine: Engine,
    raw_objects: Any,
    broker: Broker,
    tmp_path: Path,
) -> None:
    text = raw_objects.store(NAME, honeypot_files(tmp_path / "text", Layout.TEXT))
    json = raw_objects.store(NAME, honeypot_files(tmp_path / "json", Layout.JSON))
    raw_objects.publish(text, json)

    with running(build_service(settings)):
        events = [e.data for e in read_events(broker.bootstrap, LOGS_PARSED, at_least=2)]

    assert all(event.unparsed_records == 0 for event in events)
    with mysql_engine.connect() as connection:
        rows = [dict(row) for row in connection.execute(select(logs)).mappings()]
    assert {row["source_sha256"] for row in rows} == {text.sha256, json.sha256}
    leaking = [row for row in rows if any(TOKEN in str(value) for value in row.values())]
    assert leaking == []
    for sha256 in (text.sha256, json.sha256):
        mine = [row for row in rows if row["source_sha256"] == sha256]
        logins = [
            (row["protocol"], row["source_ip"], row["username"], row["password"])
            for row in mine
            if row["event_type"] == "login_attempt"
        ]
        assert logins == [
            ("ssh", "203.0.113.9", "root", "hunter2"),
            ("ftp", None, "ADMIN", "ADMIN"),
        ]
        assert sum(row["event_type"] == "llm_escalation" for row in mine) == 1
        assert any("[REDACTED]" in row["log"] for row in mine)
