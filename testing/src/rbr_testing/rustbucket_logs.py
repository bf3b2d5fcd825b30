"""Log files written exactly as the real rustbucket writes them, for a stand-in honeypot.

jamesbinford/rustbucket logs through tracing-subscriber's `fmt` layer and tracing-appender's
rolling files, in one of two ways depending on its version:

* text (`.with_ansi(false)`, `rolling::daily`): `logs/rustbucket.log.YYYY-MM-DD` (UTC date),
  records `2025-12-12T14:00:00.123456Z  INFO rustbucket::protocols::ssh: <message>`, the
  values formatted into the message (`SSH password auth attempt - client: ..., user: ...`);
* JSON (`.json()`, `rolling::hourly`): `logs/rustbucket.log.YYYY-MM-DD-HH`, one object per
  line, `{"timestamp":...,"level":"INFO","fields":{"message":"Authentication attempt",
  "event_type":"auth",...},"target":"rustbucket::protocols::ssh"}`, fixed messages with
  structured fields.

`RustbucketLog` appends what one instance logs for each thing that happens to it (its
start-up and registration, an SSH, FTP, SMTP or HTTP session, a rejected connection, the S3
uploader's check), with the message texts and targets of the honeypot's source. Its token
appears where the honeypot writes it (`Generated instance token: ...`, the registration
payload), so tests can check that nothing downstream keeps it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from http import HTTPStatus
from pathlib import Path
from typing import Literal

Answer = Literal["native", "unknown", "llm"]
"""How the honeypot answers a command: a canned answer, `command not found`, or its LLM."""

MAIN = "rustbucket"
REGISTRATION = "rustbucket::registration"
S3_LOGGER = "rustbucket::s3_logger"
SSH = "rustbucket::protocols::ssh"
SSH_SHELL = "rustbucket::protocols::ssh_shell"
COMMAND_LOOP = "rustbucket::protocols"
FTP = "rustbucket::protocols::ftp"
SMTP = "rustbucket::protocols::smtp"
HTTP = "rustbucket::protocols::http"

_LINE_STEP = timedelta(microseconds=1500)
"""The time between two consecutive lines of one event."""


class Layout(StrEnum):
    """How the honeypot's version writes its log."""

    TEXT = "text"
    JSON = "json"


def rfc3339_micro(moment: datetime) -> str:
    """Returns `moment` as tracing-subscriber writes it: `2025-12-12T14:00:00.123456Z` (UTC)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}Z"


Value = str | int | bool
"""A field value; a `str` is written raw (Display), a `Quoted` one in quotes (a literal)."""


class Quoted(str):
    """A string field tracing records as `&str` (a literal): `key="value"` in the text layout."""

    __slots__ = ()


def text_line(
    moment: datetime, level: str, target: str, message: str, fields: dict[str, Value]
) -> str:
    """Returns one record of the text layout (message first, then `key=value` fields)."""
    parts = [message]
    for key, value in fields.items():
        shown = str(value).lower() if isinstance(value, bool) else value
        parts.append(f'{key}="{shown}"' if isinstance(value, Quoted) else f"{key}={shown}")
    return f"{rfc3339_micro(moment)} {level:>5} {target}: {' '.join(parts)}\n"


def json_line(
    moment: datetime, level: str, target: str, message: str, fields: dict[str, Value]
) -> str:
    """Returns one record of the JSON layout (serde_json: compact, UTF-8, message first)."""
    record = {
        "timestamp": rfc3339_micro(moment),
        "level": level,
        "fields": {"message": message, **{key: _plain(value) for key, value in fields.items()}},
        "target": target,
    }
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def _plain(value: Value) -> Value:
    return str(value) if isinstance(value, Quoted) else value


def rust_debug_str(value: str) -> str:
    """Returns a string as Rust's Debug writes it: quoted, quotes, backslashes, controls escaped."""
    escaped = []
    for char in value:
        if char in '"\\':
            escaped.append("\\" + char)
        elif char in "\n\r\t":
            escaped.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{{{ord(char):x}}}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def rust_option(value: str | None) -> str:
    """Returns an `Option<String>` as Rust's Debug writes it: `Some("x")` or `None`."""
    return "None" if value is None else f"Some({rust_debug_str(value)})"


@dataclass
class _Clock:
    at: datetime

    def tick(self) -> datetime:
        moment = self.at
        self.at += _LINE_STEP
        return moment


@dataclass
class RustbucketLog:
    """The log directory of one rustbucket instance, appended to as the real honeypot does.

    Attributes:
        directory: the honeypot's `logs/` directory.
        instance_name: the name it generates at start (`rustbucket-XXXXXXXX`), its S3 folder.
        layout: text (daily files) or JSON (hourly files).
        written: every file written, in the order first written.
    """

    directory: Path
    instance_name: str
    layout: Layout = Layout.TEXT
    written: list[Path] = field(default_factory=list)

    def path_for(self, moment: datetime) -> Path:
        """Returns the file a line written at `moment` goes to (tracing-appender's naming)."""
        moment = moment.astimezone(UTC)
        suffix = moment.strftime("%Y-%m-%d" if self.layout is Layout.TEXT else "%Y-%m-%d-%H")
        return self.directory / f"rustbucket.log.{suffix}"

    def s3_key(self, path: Path, prefix: str | None = None) -> str:
        """Returns the key the honeypot uploads a file to: `[prefix/]<instance name>/<file>`."""
        folder = f"{prefix.rstrip('/')}/{self.instance_name}" if prefix else self.instance_name
        return f"{folder}/{path.name}"

    def write(
        self, moment: datetime, level: str, target: str, message: str, **fields: Value
    ) -> None:
        """Appends one record to the file of its moment."""
        render = text_line if self.layout is Layout.TEXT else json_line
        path = self.path_for(moment)
        if path not in self.written:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.written.append(path)
        with path.open("a", encoding="utf-8", newline="") as stream:
            stream.write(render(moment, level, target, message, fields))

    @property
    def text(self) -> bool:
        """Tells whether this version writes the text layout (formatted messages)."""
        return self.layout is Layout.TEXT

    # -- start-up ------------------------------------------------------------------------------

    def start(
        self,
        at: datetime,
        *,
        registry_url: str | None = None,
        registered_name: str | None = None,
        token: str | None = None,
        public_ip: str = "0.0.0.0",
        registration_status: int = 200,
        registry_answer: str = '{"status":"pending"}',
        s3_bucket: str | None = None,
    ) -> datetime:
        """Logs a start: tracing, the instance name, S3, registration, the listeners.

        Args:
            at: when the process started.
            registry_url: `RUSTBUCKET_REGISTRY_URL`; None: no registration is attempted.
            registered_name: the name it registers with (new at every start).
            token: the token it registers with (new at every start; logged in clear).
            public_ip: what it learnt as its address (`0.0.0.0` when it could not).
            registration_status: the registry's HTTP status.
            registry_answer: the registry's answer body.
            s3_bucket: `S3_BUCKET_NAME`; None: uploads are off.

        Returns:
            The moment after its last line.
        """
        clock = _Clock(at)
        self._info(clock, MAIN, "Tracing initialized", event_type=Quoted("operational"))
        self._info(
            clock, MAIN, "Configuration loaded from Config.toml", event_type=Quoted("operational")
        )
        if self.text:
            self._info(clock, MAIN, f"Instance name: {self.instance_name}")
        else:
            self._info(
                clock,
                MAIN,
                "Instance started",
                event_type=Quoted("operational"),
                instance_name=self.instance_name,
            )
        self._s3_start(clock, s3_bucket)
        self._registration(
            clock,
            registry_url=registry_url,
            name=registered_name,
            token=token,
            public_ip=public_ip,
            status=registration_status,
            answer=registry_answer,
        )
        self._listeners(clock)
        return clock.at

    def _s3_start(self, clock: _Clock, bucket: str | None) -> None:
        operational = {"event_type": Quoted("operational"), "component": Quoted("s3_logger")}
        if bucket is None:
            self._info(clock, MAIN, "S3 logging is disabled", **operational)
            return
        if self.text:
            self._info(clock, MAIN, "S3 logging is enabled")
            for message in (
                "Starting S3 log uploader background task",
                f"S3 Bucket: {rust_option(bucket)}",
                f"Instance: {self.instance_name}",
                "Upload interval: 1 hours",
                "Delete after upload: false",
            ):
                self._info(clock, S3_LOGGER, message)
            return
        self._info(clock, MAIN, "S3 logging is enabled", **operational)
        self._info(
            clock,
            S3_LOGGER,
            "Starting S3 log uploader background task",
            **operational,
            bucket=rust_option(bucket),
            instance=self.instance_name,
        )

    def _registration(
        self,
        clock: _Clock,
        *,
        registry_url: str | None,
        name: str | None,
        token: str | None,
        public_ip: str,
        status: int,
        answer: str,
    ) -> None:
        self._info(clock, REGISTRATION, "Checking registration configuration...")
        if registry_url is None or name is None or token is None:
            self._info(
                clock,
                REGISTRATION,
                "No rustbucket_registry_url configured. Registration is optional - skipping.",
            )
            self._info(clock, REGISTRATION, "No registry URL configured. Skipping registration.")
            return
        self._info(
            clock, REGISTRATION, f"Using registry URL from environment variable: {registry_url}"
        )
        if self.text:
            self._info(clock, REGISTRATION, f"Generated instance name: {name}")
            self._info(clock, REGISTRATION, f"Generated instance token: {token}")
        else:
            self._info(clock, REGISTRATION, "Using instance identity", name=name)
        self._info(clock, REGISTRATION, "Gathering system information...")
        if public_ip == "0.0.0.0":
            self._log(
                clock,
                "WARN",
                REGISTRATION,
                "Failed to retrieve public IP address, using placeholder",
            )
        else:
            self._info(clock, REGISTRATION, f"Retrieved public IP address: {public_ip}")
        url = registry_url if registry_url.endswith("/") else registry_url + "/"
        self._info(clock, REGISTRATION, f"Attempting to register instance with URL: {registry_url}")
        self._info(clock, REGISTRATION, f"Posting registration data to URL: {url}")
        self._info(
            clock, REGISTRATION, f"Registration payload: {self._payload(name, public_ip, token)}"
        )
        self._registry_answer(clock, url, name, status, answer)

    def _payload(self, name: str, public_ip: str, token: str) -> str:
        """Returns the registration payload as `{:?}` writes it (the text versions list more)."""
        fields = [
            f"name: {rust_debug_str(name)}",
            f"ip_address: {rust_debug_str(public_ip)}",
            f"operating_system: {rust_debug_str('linux (x86_64)')}",
            f"token: {rust_debug_str(token)}",
        ]
        if self.text:
            fields += [
                f"{unset}: None"
                for unset in ("cpu_usage", "memory_usage", "disk_space", "uptime", "connections")
            ]
        return "RegistrationPayload { " + ", ".join(fields) + " }"

    def _registry_answer(
        self, clock: _Clock, url: str, name: str, status: int, answer: str
    ) -> None:
        shown = f"{status} {HTTPStatus(status).phrase}"
        if status == HTTPStatus.OK:
            self._info(
                clock,
                REGISTRATION,
                f"Successfully registered instance '{name}'. Server response: {answer}",
            )
        elif status == HTTPStatus.NOT_FOUND:
            self._log(
                clock,
                "ERROR",
                REGISTRATION,
                f"Registration failed: Bad URL (404 Not Found) for {url}. "
                f"Server response: {answer}",
            )
        else:
            self._log(
                clock,
                "WARN",
                REGISTRATION,
                f"Registration attempt to {url} returned unexpected status: {shown}. "
                f"Server response: {answer}",
            )

    def _listeners(self, clock: _Clock) -> None:
        if self.text:
            self._info(clock, MAIN, "Generated SSH host key (Ed25519)")
            self._info(clock, MAIN, "Starting SSH honeypot on 0.0.0.0:22")
        else:
            ssh = {"event_type": Quoted("operational"), "protocol": Quoted("SSH")}
            self._info(clock, MAIN, "Generated host key", **ssh, key_type=Quoted("Ed25519"))
            self._info(clock, MAIN, "Starting SSH honeypot", **ssh, port=22)
        self._info(
            clock,
            MAIN,
            "All listeners started. Honeypot is now running indefinitely.",
            event_type=Quoted("operational"),
        )

    def upload_check(self, at: datetime) -> None:
        """Logs the S3 uploader's periodic check (written into the current file first)."""
        if self.text:
            self._info(_Clock(at), S3_LOGGER, "S3 uploader: Starting log upload check")
        else:
            self._info(
                _Clock(at),
                S3_LOGGER,
                "Starting log upload check",
                event_type=Quoted("operational"),
                component=Quoted("s3_logger"),
            )

    # -- attackers -------------------------------------------------------------------------------

    def connection_rejected(self, at: datetime, ip: str, port: int, reason: str) -> None:
        """Logs a connection the rate limiter refused (FTP, SMTP or HTTP listener)."""
        client = _address(ip, port)
        if self.text:
            self._info(_Clock(at), MAIN, f"Connection rejected from {client}: {reason}")
        else:
            self._info(
                _Clock(at),
                MAIN,
                "Connection rejected",
                event_type=Quoted("connection"),
                client_ip=client,
                reason=reason,
            )

    def ssh_session(
        self,
        at: datetime,
        *,
        ip: str,
        port: int,
        username: str,
        password: str,
        commands: Sequence[tuple[str, Answer]] = (),
        exec_command: str | None = None,
    ) -> datetime:
        """Logs an SSH session: connection, password login, shell commands or one exec, close.

        Returns:
            The moment after its last line.
        """
        clock = _Clock(at)
        client = _address(ip, port)
        self._ssh(
            clock, client, "connection", "New SSH connection", f"New SSH connection from: {client}"
        )
        if self.text:
            self._info(
                clock,
                SSH,
                f"SSH password auth attempt - client: {client}, user: {username}, "
                f"password: {password}",
            )
        else:
            self._info(
                clock,
                SSH,
                "Authentication attempt",
                **_ssh_fields("auth", client),
                username=username,
                password=password,
                auth_method=Quoted("password"),
            )
        self._ssh(
            clock, client, "connection", "Channel opened", f"SSH channel opened - client: {client}"
        )
        llm_calls = 0
        if exec_command is not None:
            self._exec(clock, client, exec_command)
        else:
            self._pty_and_shell(clock, client)
        for command, answer in commands:
            self._command(clock, SSH_SHELL, "SSH", command, answer)
            llm_calls += answer == "llm"
        self._ssh(
            clock, client, "connection", "Channel closed", f"SSH channel closed - client: {client}"
        )
        processed = len(commands) + (exec_command is not None)
        if self.text:
            self._info(
                clock,
                SSH,
                f"SSH session ended - client: {client}, commands: {processed}, "
                f"llm_calls: {llm_calls}, duration: 5.000213s",
            )
        else:
            self._info(
                clock,
                SSH,
                "Session ended",
                **_ssh_fields("session", client),
                commands_processed=processed,
                llm_calls_made=llm_calls,
                duration_secs=5,
            )
        return clock.at

    def _ssh(self, clock: _Clock, client: str, kind: str, fixed: str, formatted: str) -> None:
        if self.text:
            self._info(clock, SSH, formatted)
        else:
            self._info(clock, SSH, fixed, **_ssh_fields(kind, client))

    def _pty_and_shell(self, clock: _Clock, client: str) -> None:
        if self.text:
            self._info(
                clock, SSH, f"SSH PTY request - client: {client}, term: xterm-256color, size: 80x24"
            )
            self._info(clock, SSH, f"SSH shell request - client: {client}")
            return
        self._info(
            clock,
            SSH,
            "PTY request",
            **_ssh_fields("connection", client),
            terminal="xterm-256color",
            width=80,
            height=24,
        )
        self._info(clock, SSH, "Shell request", **_ssh_fields("connection", client))

    def _exec(self, clock: _Clock, client: str, command: str) -> None:
        if self.text:
            self._info(clock, SSH, f"SSH exec request - client: {client}, command: {command}")
        else:
            self._info(
                clock, SSH, "Exec request", **_ssh_fields("command", client), command=command
            )

    def _command(
        self, clock: _Clock, target: str, protocol: str, command: str, answer: Answer
    ) -> None:
        """Logs one command of a shell or command loop, then how it was answered."""
        if self.text:
            self._info(clock, target, f"{protocol} command received: {command}")
            said = {
                "native": f"{protocol}: Using native response for command: {command}",
                "unknown": f"{protocol}: Unknown command, incrementing counter: {command}",
                "llm": f"{protocol}: Escalating to LLM for command: {command}",
            }[answer]
            self._info(clock, target, said)
            return
        fields = {"protocol": Quoted(protocol), "command": command}
        self._info(clock, target, "Command received", event_type=Quoted("command"), **fields)
        if answer == "native":
            self._info(
                clock,
                target,
                "Using native response",
                event_type=Quoted("response"),
                **fields,
                response_type=Quoted("native"),
            )
        elif answer == "unknown":
            self._info(clock, target, "Unknown command", event_type=Quoted("command"), **fields)
        else:
            self._info(
                clock,
                target,
                "LLM escalation",
                event_type=Quoted("llm"),
                **fields,
                decision=Quoted("escalate"),
            )

    def ftp_session(
        self,
        at: datetime,
        *,
        ip: str,
        port: int,
        username: str,
        password: str,
        commands: Sequence[tuple[str, Answer]] = (),
    ) -> datetime:
        """Logs an FTP session: connection, USER and PASS (logged upper-cased), commands, close.

        Returns:
            The moment after its last line.
        """
        clock = _Clock(at)
        self._accepted(clock, "FTP", ip)
        user, secret = username.upper(), password.upper()  # the handler upper-cases the line
        self._command_received(clock, "FTP", f"USER {username}")
        if self.text:
            self._info(clock, FTP, f"FTP USER: {user}")
        else:
            self._info(
                clock,
                FTP,
                "Username provided",
                event_type=Quoted("auth"),
                protocol=Quoted("FTP"),
                username=user,
            )
        self._answered(clock, "FTP", f"USER {username}")
        self._command_received(clock, "FTP", f"PASS {password}")
        if self.text:
            self._info(clock, FTP, f"FTP PASS: {secret} (username: {rust_option(user)})")
        else:
            self._info(
                clock,
                FTP,
                "Authentication attempt",
                event_type=Quoted("auth"),
                protocol=Quoted("FTP"),
                username=rust_option(user),
                password=secret,
            )
        self._answered(clock, "FTP", f"PASS {password}")
        for command, answer in commands:
            self._command(clock, COMMAND_LOOP, "FTP", command, answer)
        self._closed(clock, "FTP", commands=2 + len(commands))
        return clock.at

    def smtp_session(
        self,
        at: datetime,
        *,
        ip: str,
        port: int,  # the SMTP listener logs the address without its port
        mail_from: str,
        rcpt_to: str,
        body: Sequence[str],
    ) -> datetime:
        """Logs an SMTP session: EHLO, MAIL FROM, RCPT TO, DATA with its lines, QUIT.

        Returns:
            The moment after its last line.
        """
        del port
        clock = _Clock(at)
        self._accepted(clock, "SMTP", ip)
        for command in ("EHLO scanner", f"MAIL FROM:{mail_from}", f"RCPT TO:{rcpt_to}", "DATA"):
            self._command_received(clock, "SMTP", command)
            self._smtp_address(clock, command)
            self._answered(clock, "SMTP", command)
        # In DATA mode every line read is logged, then kept for the message; the command loop
        # trims what it reads and skips what is left empty.
        lines = [line.strip() for line in body if line.strip()]
        for line in lines:
            self._command_received(clock, "SMTP", line)
        self._command_received(clock, "SMTP", ".")
        data = "".join(line + "\n" for line in lines)
        if self.text:
            self._info(clock, SMTP, f"SMTP email data received:\n{data}")
        else:
            self._info(
                clock,
                SMTP,
                "Email data received",
                event_type=Quoted("command"),
                protocol=Quoted("SMTP"),
                mail_from=rust_option(mail_from.upper()),
                rcpt_to=f"[{rust_debug_str(rcpt_to.upper())}]",
                email_data=data,
            )
        self._command_received(clock, "SMTP", "QUIT")
        self._closed(clock, "SMTP", commands=len(lines) + 6, closed=False)
        return clock.at

    def _smtp_address(self, clock: _Clock, command: str) -> None:
        upper = command.upper()
        for prefix, name, message in (
            ("MAIL FROM:", "mail_from", "Mail sender specified"),
            ("RCPT TO:", "rcpt_to", "Mail recipient specified"),
        ):
            if not upper.startswith(prefix):
                continue
            address = upper.removeprefix(prefix).strip()
            if self.text:
                self._info(clock, SMTP, f"SMTP {prefix.removesuffix(':')}: {address}")
            else:
                self._info(
                    clock,
                    SMTP,
                    message,
                    event_type=Quoted("command"),
                    protocol=Quoted("SMTP"),
                    **{name: address},
                )

    def http_request(
        self, at: datetime, *, ip: str, port: int, request: str, answer: Answer = "native"
    ) -> datetime:
        """Logs one HTTP connection: the raw request (CRLFs and all), its request line, answer.

        Returns:
            The moment after its last line.
        """
        del port  # the HTTP listener logs the address without its port
        clock = _Clock(at)
        self._accepted(clock, "HTTP", ip)
        method, path = [*request.split("\r\n", 1)[0].split(), "", ""][:2]
        if self.text:
            self._info(clock, HTTP, f"HTTP request received:\n{request}")
            self._info(clock, HTTP, f"HTTP {method} {path}")
            said = {
                "native": f"HTTP: Using native response for {method} {path}",
                "unknown": f"HTTP: Unknown path, incrementing counter: {path}",
                "llm": f"HTTP: Escalating to LLM for {method} {path}",
            }[answer]
            self._info(clock, HTTP, said)
            self._info(
                clock,
                HTTP,
                f"HTTP session ended. Requests: 1, LLM calls: {int(answer == 'llm')}, "
                "Duration: 1.204ms",
            )
            return clock.at
        http = {"protocol": Quoted("HTTP")}
        self._info(
            clock, HTTP, "Request received", event_type=Quoted("command"), **http, request=request
        )
        self._info(
            clock,
            HTTP,
            "Request parsed",
            event_type=Quoted("command"),
            **http,
            method=method,
            path=path,
        )
        if answer == "native":
            self._info(
                clock,
                HTTP,
                "Using native response",
                event_type=Quoted("response"),
                **http,
                method=method,
                path=path,
                response_type=Quoted("native"),
            )
        elif answer == "unknown":
            self._info(clock, HTTP, "Unknown path", event_type=Quoted("command"), **http, path=path)
        else:
            self._info(
                clock,
                HTTP,
                "LLM escalation",
                event_type=Quoted("llm"),
                **http,
                method=method,
                path=path,
                decision=Quoted("escalate"),
            )
        self._info(
            clock,
            HTTP,
            "Session ended",
            event_type=Quoted("session"),
            **http,
            requests_processed=1,
            llm_calls_made=int(answer == "llm"),
            duration_secs=0,
        )
        return clock.at

    # -- the pieces every listener shares --------------------------------------------------------

    def _accepted(self, clock: _Clock, protocol: str, ip: str) -> None:
        """Logs a connection the FTP/SMTP/HTTP listener accepted and its handler's start."""
        target = {"FTP": FTP, "SMTP": SMTP, "HTTP": HTTP}[protocol]
        if self.text:
            self._info(clock, MAIN, f"Actor attempted to connect - {protocol}")
            self._info(clock, target, f"{protocol} handler started")
            return
        self._info(
            clock,
            MAIN,
            "New connection",
            event_type=Quoted("connection"),
            protocol=Quoted(protocol),
            client_ip=ip,
        )
        self._info(
            clock,
            target,
            "Handler started",
            event_type=Quoted("connection"),
            protocol=Quoted(protocol),
        )

    def _command_received(self, clock: _Clock, protocol: str, command: str) -> None:
        if self.text:
            self._info(clock, COMMAND_LOOP, f"{protocol} command received: {command}")
        else:
            self._info(
                clock,
                COMMAND_LOOP,
                "Command received",
                event_type=Quoted("command"),
                protocol=Quoted(protocol),
                command=command,
            )

    def _answered(self, clock: _Clock, protocol: str, command: str) -> None:
        if self.text:
            self._info(
                clock, COMMAND_LOOP, f"{protocol}: Using native response for command: {command}"
            )
        else:
            self._info(
                clock,
                COMMAND_LOOP,
                "Using native response",
                event_type=Quoted("response"),
                protocol=Quoted(protocol),
                command=command,
                response_type=Quoted("native"),
            )

    def _closed(self, clock: _Clock, protocol: str, *, commands: int, closed: bool = True) -> None:
        """Logs the end of a command loop: the peer closing (unless it quit), the summary."""
        if self.text:
            if closed:
                self._info(clock, COMMAND_LOOP, f"{protocol} connection closed")
            self._info(
                clock,
                COMMAND_LOOP,
                f"{protocol} session ended. Commands: {commands}, LLM calls: 0, "
                "Duration: 2.500117s",
            )
            return
        if closed:
            self._info(
                clock,
                COMMAND_LOOP,
                "Connection closed",
                event_type=Quoted("connection"),
                protocol=Quoted(protocol),
            )
        self._info(
            clock,
            COMMAND_LOOP,
            "Session ended",
            event_type=Quoted("session"),
            protocol=Quoted(protocol),
            commands_processed=commands,
            llm_calls_made=0,
            duration_secs=2,
        )

    def _info(self, clock: _Clock, target: str, message: str, **fields: Value) -> None:
        self._log(clock, "INFO", target, message, **fields)

    def _log(self, clock: _Clock, level: str, target: str, message: str, **fields: Value) -> None:
        if self.text:
            fields = {}  # the text versions format their values into the message
        self.write(clock.tick(), level, target, message, **fields)


def _address(ip: str, port: int) -> str:
    """Returns a socket address as Rust's Display writes it (`[v6]:port` for IPv6)."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _ssh_fields(kind: str, client: str) -> dict[str, Value]:
    return {"event_type": Quoted(kind), "protocol": Quoted("SSH"), "client_ip": client}


def lines_of(paths: Sequence[Path]) -> Iterator[str]:
    """Yields the lines of log files in order, without their newlines (a CR stays)."""
    for path in paths:
        yield from path.read_text(encoding="utf-8").split("\n")[:-1]
