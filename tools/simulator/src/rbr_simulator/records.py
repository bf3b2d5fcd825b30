"""Generated log records and the ground truth each one carries.

A `LogRecord` holds the exact bytes a bucket serves (`data`, one or more lines ending in a
newline) together with what a correct parser should find in them: the format, a normalised
event type and the key fields. Ground-truth fields hold only values that appear in the
record's text, so a parser test can compare parsed rows with them field by field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class LogFormat(StrEnum):
    """The log formats a simulated bucket writes."""

    RUSTBUCKET = "rustbucket"
    COWRIE = "cowrie"
    SSHD = "sshd"
    HTTP = "http"


class EventType(StrEnum):
    """Normalised event types shared by all formats (the ground truth of a record)."""

    CONNECT = "connect"
    CLIENT_VERSION = "client_version"
    LOGIN_ATTEMPT = "login_attempt"
    LOGIN_FAILED = "login_failed"
    LOGIN_SUCCESS = "login_success"
    INVALID_USER = "invalid_user"
    SESSION = "session"
    COMMAND = "command"
    COMMAND_FAILED = "command_failed"
    DOWNLOAD = "download"
    DATA_RECEIVED = "data_received"
    HTTP_REQUEST = "http_request"
    RESPONSE = "response"
    DISCONNECT = "disconnect"
    RATE_LIMITED = "rate_limited"
    SYSTEM = "system"
    ERROR = "error"


class HostileKind(StrEnum):
    """Kinds of hostile content planted in attacker-controlled fields."""

    ANSI = "ansi"
    CONTROL = "control"
    NUL = "nul"
    INVALID_UTF8 = "invalid_utf8"
    LONG_LINE = "long_line"
    PROMPT_INJECTION = "prompt_injection"


@dataclass(frozen=True, slots=True, kw_only=True)
class LogRecord:
    """One generated log record: its bytes and its ground truth.

    Attributes:
        format: The log format of `data`.
        event_type: What happened, normalised across formats.
        timestamp: When it happened (UTC), as written in the record.
        data: The exact bytes served, ending in a newline; more than one line when a raw
            payload spilled onto continuation lines. May hold invalid UTF-8 (hostile records).
        seq: The record's sequence number in its bucket's log (0 until a bucket stores it).
        message: The message text (rustbucket: after `target: `, continuation lines included;
            cowrie: the `message` field; sshd: after `sshd[pid]: `; http: the request line).
        level: Log level (rustbucket only): INFO, WARN, ERROR or DEBUG.
        target: Tracing target (rustbucket only), e.g. `rustbucket::protocols::ssh`.
        protocol: Protocol of the session (ssh, telnet, http, ftp, smtp) when the text says it.
        src_ip: Attacker IP when the text holds it.
        src_port: Attacker source port when the text holds it.
        username: Login name tried, when any.
        password: Password tried, when any.
        command: Command entered, when any.
        url: Download URL (cowrie) or request target (http, rustbucket HTTP requests).
        sha256: SHA-256 of a downloaded file (cowrie downloads).
        session: Session id (cowrie).
        http_method: HTTP method, when the text holds one.
        http_status: HTTP status (http access log).
        user_agent: HTTP user agent (http access log).
        hostile: The hostile content planted in this record, if any.

    Text fields hold the value as written in the log; bytes that are not valid UTF-8 appear
    as U+FFFD, as a lossy decoder would show them.
    """

    format: LogFormat
    event_type: EventType
    timestamp: datetime
    data: bytes
    seq: int = 0
    message: str | None = None
    level: str | None = None
    target: str | None = None
    protocol: str | None = None
    src_ip: str | None = None
    src_port: int | None = None
    username: str | None = None
    password: str | None = None
    command: str | None = None
    url: str | None = None
    sha256: str | None = None
    session: str | None = None
    http_method: str | None = None
    http_status: int | None = None
    user_agent: str | None = None
    hostile: HostileKind | None = None

    @property
    def text(self) -> str:
        """Returns `data` decoded as UTF-8, invalid bytes replaced by U+FFFD."""
        return self.data.decode("utf-8", "replace")

    @property
    def line_count(self) -> int:
        """Returns how many physical lines the record spans."""
        return self.data.count(b"\n")

    @property
    def size(self) -> int:
        """Returns the record's size in bytes."""
        return len(self.data)


@dataclass(frozen=True, slots=True)
class LogMix:
    """What share of episodes each format gets, and how much hostile content to plant.

    Attributes:
        rustbucket: Relative weight of rustbucket text episodes.
        cowrie: Relative weight of Cowrie JSON sessions.
        sshd: Relative weight of OpenSSH auth.log episodes.
        http: Relative weight of HTTP access-log episodes.
        hostile_fraction: Probability that a record carrying attacker-controlled text gets
            hostile content planted in it (0 disables hostile content).
        long_line_chars: Length of the very long lines planted as hostile content.
    """

    rustbucket: float = 0.4
    cowrie: float = 0.3
    sshd: float = 0.15
    http: float = 0.15
    hostile_fraction: float = 0.0
    long_line_chars: int = 70_000

    def __post_init__(self) -> None:
        weights = self.weights()
        if any(weight < 0 for weight in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError("format weights must be >= 0 and not all zero")
        if not 0.0 <= self.hostile_fraction <= 1.0:
            raise ValueError("hostile_fraction must be between 0 and 1")
        if self.long_line_chars < 1:
            raise ValueError("long_line_chars must be positive")

    def weights(self) -> dict[LogFormat, float]:
        """Returns the relative weight of each format."""
        return {
            LogFormat.RUSTBUCKET: self.rustbucket,
            LogFormat.COWRIE: self.cowrie,
            LogFormat.SSHD: self.sshd,
            LogFormat.HTTP: self.http,
        }

    @classmethod
    def only(cls, log_format: LogFormat | str, *, hostile_fraction: float = 0.0) -> LogMix:
        """Returns a mix that generates a single format.

        Args:
            log_format: The only format to generate.
            hostile_fraction: See the class attribute.
        """
        chosen = LogFormat(log_format)
        return cls(
            rustbucket=float(chosen is LogFormat.RUSTBUCKET),
            cowrie=float(chosen is LogFormat.COWRIE),
            sshd=float(chosen is LogFormat.SSHD),
            http=float(chosen is LogFormat.HTTP),
            hostile_fraction=hostile_fraction,
        )
