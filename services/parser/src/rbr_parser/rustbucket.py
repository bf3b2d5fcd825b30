"""rustbucket's own log: tracing-subscriber records and the messages the honeypot writes.

Both layouts (text `<RFC3339> <LEVEL> target: message` with multi-line messages, and JSON)
and both message generations (everything formatted into the message, or a fixed message with
`key=value` fields). `SHAPES` lists every message that says something about an attacker; the
rest is `system` (or `error`). Only an interaction's primary record fills `command` and the
credentials, so a command counts once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from rbr_parser.formats import (
    MAX_NAME,
    MAX_NATIVE_TYPE,
    MAX_SHORT,
    MAX_TEXT,
    MAX_URL,
    MAX_USER_AGENT,
    RUSTBUCKET,
    Fields,
    empty_fields,
    parse_rfc3339,
    split_host_port,
)
from rbr_parser.sanitize import clean, clean_optional

LEVELS: Final = frozenset({"TRACE", "DEBUG", "INFO", "WARN", "ERROR"})

# The spans tracing writes before the target (`conn{client_ip=1.2.3.4:5}:auth: `), taken only
# when one has fields: a fieldless one alone (`conn: `) cannot be told from a target. Every
# part is possessive and the first span with fields is where the fieldless ones end, so a
# hostile line is read once, never retried from each of its colons.
_SPAN = r"[^\s{}:]++(?:\{[^{}\n]*+\})?+:"
_SPANS = rf"(?:[^\s{{}}:]++:)*+[^\s{{}}:]++\{{[^{{}}\n]*+\}}:(?:{_SPAN})*+ "
_HEADER = re.compile(
    r"(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)\s++"
    r"(?P<level>TRACE|DEBUG|INFO|WARN|ERROR)\s++"
    rf"(?P<spans>{_SPANS})?"
    r"(?:(?P<target>[^\s:][^\s]*?): )?(?P<message>.*)",
    re.DOTALL,
)
# The most characters of a message the format-string shapes are matched against: every
# honeypot message names its shape in its first few words, and the values it ends with
# (commands, passwords) are cut to their columns anyway.
_MAX_SHAPE_CHARS: Final = 64 * 1024


def match_header(line: str) -> re.Match[str] | None:
    """Returns the header match when the line starts a rustbucket text record."""
    return _HEADER.match(line)


def is_tracing_json(event: Mapping[str, Any]) -> bool:
    """Tells whether a decoded JSON line is a tracing-subscriber JSON record."""
    return (
        isinstance(event.get("timestamp"), str)
        and event.get("level") in LEVELS
        and isinstance(event.get("fields"), dict)
    )


def looks_like_tracing_json(line: str) -> bool:
    """Tells whether a line that is not valid JSON was meant as a tracing JSON record (cut)."""
    return line.startswith('{"timestamp":"')


# -- the fields of an event ----------------------------------------------------------------------


class _EventFields(Protocol):
    """The structured fields of one event, whatever the layout wrote them in."""

    def get(self, name: str) -> str | None:
        """Returns a field's value as text, or None when the event has no such field."""

    def credentials(self) -> tuple[str | None, str | None]:
        """Returns the (username, password) fields."""

    def to_end(self, name: str) -> str | None:
        """Returns a field that may hold spaces and newlines (a command, a request)."""


class _JsonFields:
    """The `fields` of a JSON record (and of its spans, which the event's own fields win over)."""

    def __init__(self, event: Mapping[str, Any]) -> None:
        merged: dict[str, Any] = {}
        spans = event.get("spans")
        for span in (*(spans if isinstance(spans, list) else ()), event.get("span")):
            if isinstance(span, dict):
                merged.update(span)
        merged.pop("name", None)
        merged.update(event["fields"])
        merged.pop("message", None)
        self.values = merged

    def get(self, name: str) -> str | None:
        value = self.values.get(name)
        if value is None or isinstance(value, dict | list):
            return None
        return str(value)

    def credentials(self) -> tuple[str | None, str | None]:
        return self.get("username"), self.get("password")

    def to_end(self, name: str) -> str | None:
        return self.get(name)


# Display values (`%x`) are written raw, string literals and Debug values quoted or as Debug.
_CLIENT_IP = re.compile(r"\bclient_ip=(\S++)")
_PROTOCOL = re.compile(r"\bprotocol=(?:\"([^\"]{1,16})\"|([A-Za-z]{1,16})\b)")
_METHOD = re.compile(r"\bmethod=(\S++)")
_PATH = re.compile(r"\bpath=(\S++)")
_TO_END: Final = {
    name: re.compile(rf"\b{name}=(.*)\Z", re.DOTALL) for name in ("command", "request")
}
# Credentials are cut with str.find, not one regex: `username=(.*?) password=` retried from
# every `username=` of a record without ` password=` took time quadratic in its length
# (seconds for 100 KB; records may be 1 MiB).
_USERNAME = re.compile(r"\busername=")
_PASSWORD: Final = " password="  # noqa: S105 - a field name, not a secret
_AUTH_METHOD: Final = ' auth_method="'


class _TextFields:
    """The `key=value` fields the text layout writes after the message (and in span braces).

    Neither a Display value nor the end of one is marked: a value runs to the next field, and
    the fields that hold free text (`command`, `request`, `password`) are the last ones their
    events declare.
    """

    def __init__(self, message: str, spans: str | None) -> None:
        self.message = message
        self.spans = spans or ""

    def get(self, name: str) -> str | None:
        pattern = {"client_ip": _CLIENT_IP, "method": _METHOD, "path": _PATH}.get(name)
        if pattern is not None:
            found = pattern.search(self.message) or pattern.search(self.spans)
            return found[1] if found else None
        if name == "protocol":
            protocol = _PROTOCOL.search(self.message)
            return (protocol[1] or protocol[2]) if protocol else None
        return None

    def credentials(self) -> tuple[str | None, str | None]:
        """Returns `username=<u> password=<p> [auth_method="<m>"]`, unquoted both.

        The username runs to the first ` password=` after `username=` (or to ` auth_method="`
        for a key), the password to a final `auth_method="..."` or the end of the record.
        """
        found = _USERNAME.search(self.message)
        if found is None:
            return None, None
        cut = self.message.find(_PASSWORD, found.end())
        if cut < 0:
            method = self.message.find(_AUTH_METHOD, found.end())
            return (self.message[found.end() : method] if method >= 0 else None), None
        password = _without_auth_method(self.message[cut + len(_PASSWORD) :])
        return self.message[found.end() : cut], password

    def to_end(self, name: str) -> str | None:
        found = _TO_END[name].search(self.message)
        return found[1] if found else None


def _without_auth_method(text: str) -> str:
    """Returns text without a final newline and a final ` auth_method="..."` field."""
    body = text[:-1] if text.endswith("\n") else text
    if not body.endswith('"'):
        return body
    # The field's value holds no quote: its opening quote is the last one before the end.
    opening = body.rfind('"', 0, len(body) - 1)
    if opening < 0 or not body.endswith(_AUTH_METHOD, 0, opening + 1):
        return body
    return body[: opening + 1 - len(_AUTH_METHOD)]


# -- the messages --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shape:
    """One message the honeypot writes.

    Attributes:
        event_type: the normalised event type of its records.
        pattern: matched at the start of the message; its named groups are fields (`addr`
            host:port, `proto`, `user`, `user_debug` a Rust `Option<String>` Debug, `password`,
            `command`, `method`, `url`, `request`).
        protocol: the protocol when the message implies it.
        structured: the structured fields its records carry (`client`, `protocol`,
            `credentials`, `command`, `request`, `http`).
    """

    event_type: str
    pattern: re.Pattern[str]
    protocol: str | None = None
    structured: tuple[str, ...] = ()


def _formatted(pattern: str, event_type: str, protocol: str | None = None) -> Shape:
    """A message the honeypot formats its values into."""
    return Shape(event_type, re.compile(pattern, re.DOTALL), protocol)


def _named(names: Iterable[str], event_type: str, *structured: str) -> list[Shape]:
    """Fixed messages with structured fields (followed by ` key=...` in the text layout)."""
    return [
        Shape(event_type, re.compile(re.escape(name) + r"(?![^ ])"), None, structured)
        for name in names
    ]


_LLM_PROVIDERS: Final = r"(?:ChatGPT|OpenAI|Claude|Gemini|Ollama)"
_SSH_CLIENT = r"client: (?P<addr>[^\s,]++)"
_LOOP_PROTOCOLS = r"(?P<proto>SSH|FTP|SMTP)"

SHAPES: Final[tuple[Shape, ...]] = (
    # main.rs: the listeners.
    _formatted(r"Connection rejected from (?P<addr>\S+?): ", "rate_limited"),
    _formatted(r"Actor attempted to connect(?: to port \d+)? - (?P<proto>\w{1,16})", "connect"),
    _formatted(r"New connection on \S+: (?P<addr>\S+)", "connect"),
    # protocols/ssh.rs, formatted messages.
    _formatted(r"New SSH connection from: (?P<addr>\S+)", "connect", "ssh"),
    _formatted(r"SSH rate limit: (?P<addr>\S+) - ", "rate_limited", "ssh"),
    _formatted(
        rf"SSH password auth attempt - {_SSH_CLIENT}, user: (?P<user>.*?), "
        r"password: (?P<password>.*)",
        "login_attempt",
        "ssh",
    ),
    _formatted(
        rf"SSH publickey auth attempt - {_SSH_CLIENT}, user: (?P<user>.*?), key_type: ",
        "login_attempt",
        "ssh",
    ),
    _formatted(
        r"SSH (?:channel opened|shell request|PTY request|env request|window change"
        rf"|subsystem request|channel closed) - {_SSH_CLIENT}",
        "session",
        "ssh",
    ),
    _formatted(rf"SSH exec request - {_SSH_CLIENT}, command: (?P<command>.*)", "command", "ssh"),
    _formatted(rf"SSH session ended - {_SSH_CLIENT}", "disconnect", "ssh"),
    _formatted(r"SSH session error", "error", "ssh"),
    # protocols/ssh_shell.rs and the FTP/SMTP command loop, formatted messages.
    _formatted(rf"{_LOOP_PROTOCOLS} command received: (?P<command>.*)", "command"),
    _formatted(rf"{_LOOP_PROTOCOLS}: Escalating to LLM for command: ", "llm_escalation"),
    _formatted(rf"{_LOOP_PROTOCOLS}: Using native response for command: ", "response"),
    _formatted(rf"{_LOOP_PROTOCOLS}: Unknown command, incrementing counter: ", "response"),
    _formatted(r"(?P<proto>FTP|SMTP|HTTP) handler started", "connect"),
    _formatted(r"(?P<proto>FTP|SMTP) connection closed", "disconnect"),
    _formatted(r"HTTP connection closed immediately", "disconnect", "http"),
    _formatted(r"(?P<proto>FTP|SMTP|HTTP) session ended\.", "disconnect"),
    _formatted(r"(?P<proto>FTP|SMTP|HTTP) read error: ", "error"),
    _formatted(r"Failed to send (?P<proto>FTP|SMTP|HTTP) (?:response|banner): ", "error"),
    # protocols/ftp.rs: the password line ends with the username as a Rust Option's Debug.
    _formatted(r"FTP USER: ", "session", "ftp"),
    _formatted(
        r"FTP PASS: (?P<password>.*?) \(username: "
        r"(?P<user_debug>Some\(\"(?:[^\"\\]|\\.)*+\"\)|None)\)\s*\Z",
        "login_attempt",
        "ftp",
    ),
    _formatted(r"FTP STOR attempt: ", "upload", "ftp"),
    # protocols/smtp.rs.
    _formatted(r"SMTP (?:MAIL FROM|RCPT TO): ", "session", "smtp"),
    _formatted(r"SMTP email data received:", "data_received", "smtp"),
    # protocols/http.rs: the raw request, then its parsed request line.
    _formatted(r"HTTP request received:\n?(?P<request>.*)", "data_received", "http"),
    _formatted(
        r"HTTP: Escalating to LLM for (?P<method>\S+) (?P<url>\S+)", "llm_escalation", "http"
    ),
    _formatted(r"HTTP: Using native response for (?P<method>\S+) (?P<url>\S+)", "response", "http"),
    _formatted(r"HTTP: Unknown path, incrementing counter: (?P<url>\S+)", "response", "http"),
    _formatted(r"HTTP (?P<method>[^\s:]+) (?P<url>\S+)\s*\Z", "http_request", "http"),
    # The LLM: decisions, requests, answers (chatgpt.rs, llm/*.rs).
    Shape("error", re.compile(r"LLM error(?![^ :])"), None, ("protocol",)),
    _formatted(r"We sent this to ChatGPT: ", "llm_request"),
    _formatted(r"ChatGPT responded: ", "response"),
    _formatted(r"Error response from ChatGPT: ", "error"),
    *_named(("LLM escalation",), "llm_escalation", "protocol"),
    Shape(
        "llm_request",
        re.compile(rf"{_LLM_PROVIDERS}(?: protocol-specific)? request(?: sent)?(?![^ ])"),
        None,
        ("protocol",),
    ),
    _formatted(rf"{_LLM_PROVIDERS} response received(?![^ ])", "response"),
    _formatted(rf"{_LLM_PROVIDERS} API error(?![^ ])", "error"),
    # The first versions' single handler (handler.rs).
    _formatted(r"Received data: ", "data_received"),
    _formatted(r"Response message: ", "response"),
    # Fixed messages with structured fields (the later versions).
    *_named(("New SSH connection", "New connection"), "connect", "client", "protocol"),
    *_named(("Handler started",), "connect", "protocol"),
    *_named(("Authentication attempt",), "login_attempt", "client", "protocol", "credentials"),
    *_named(("Exec request",), "command", "client", "protocol", "command"),
    *_named(("Command received",), "command", "protocol", "command"),
    *_named(("Request received",), "data_received", "protocol", "request"),
    *_named(("Request parsed",), "http_request", "protocol", "http"),
    *_named(("Using native response", "Unknown path"), "response", "protocol", "http"),
    *_named(("Unknown command",), "response", "protocol"),
    *_named(
        (
            "Channel opened",
            "Shell request",
            "PTY request",
            "Environment variable set",
            "Window size change",
            "Subsystem request",
            "Channel closed",
        ),
        "session",
        "client",
        "protocol",
    ),
    *_named(
        ("Username provided", "Mail sender specified", "Mail recipient specified"),
        "session",
        "protocol",
    ),
    *_named(("Email data received",), "data_received", "protocol"),
    *_named(("File upload attempt",), "upload", "protocol"),
    *_named(("Session ended",), "disconnect", "client", "protocol"),
    *_named(("Connection closed", "Connection closed immediately"), "disconnect", "protocol"),
    *_named(
        ("Connection rejected", "Connection blocked", "IP banned", "Rate limit exceeded"),
        "rate_limited",
        "client",
        "protocol",
    ),
    *_named(
        ("Failed to send response", "Failed to send banner", "Failed to parse request"),
        "error",
        "protocol",
    ),
    *_named(("Read error",), "error", "protocol"),
)
"""Every message that says something about an attacker, in the order they are tried."""


_MAX_WORD_CHARS: Final = 32


def _first_word(text: str) -> str:
    end = 0
    while end < len(text) and end < _MAX_WORD_CHARS and text[end] not in " :\n":
        end += 1
    return text[:end]


def _index(shapes: Iterable[Shape]) -> dict[str, tuple[Shape, ...]]:
    """Groups the shapes by the first word of the messages they can match (tried in order)."""
    index: dict[str, list[Shape]] = {}
    for shape in shapes:
        for word in _first_words(shape.pattern.pattern):
            index.setdefault(word, []).append(shape)
    return {word: tuple(group) for word, group in index.items()}


def _first_words(pattern: str) -> tuple[str, ...]:
    """Returns the literal first words a shape's pattern can start with."""
    if pattern.startswith("(?P<proto>"):
        words = pattern[len("(?P<proto>") : pattern.index(")")]
        return tuple(words.split("|"))
    if pattern.startswith(_LLM_PROVIDERS):
        return tuple(_LLM_PROVIDERS[3:-1].split("|"))
    return (_first_word(pattern.replace("\\", "")),)


_BY_FIRST_WORD: Final = _index(SHAPES)


def shape_of(message: str) -> tuple[Shape, re.Match[str]] | None:
    """Returns the shape of a message and its match, or None for a message of no interest."""
    for shape in _BY_FIRST_WORD.get(_first_word(message), ()):
        found = shape.pattern.match(message, 0, _MAX_SHAPE_CHARS)
        if found is not None:
            return shape, found
    return None


# -- records -------------------------------------------------------------------------------------


def parse_text(header: re.Match[str], message: str) -> Fields:
    """Returns the fields of a text record.

    Args:
        header: the match of its first line (`match_header`).
        message: the whole message: the first line's after `target: ` and every
            continuation line, joined with newlines.
    """
    row = _record(message, header["level"], header["ts"], header["target"])
    row["message"] = clean(message, MAX_TEXT, multiline=True) or None
    _fill(row, message, _TextFields(message, header["spans"]))
    return row


def parse_json(event: Mapping[str, Any]) -> Fields:
    """Returns the fields of a JSON record (`is_tracing_json`)."""
    fields = _JsonFields(event)
    message = event["fields"].get("message")
    message = message if isinstance(message, str) else ""
    target = event.get("target")
    row = _record(message, event["level"], event["timestamp"], target)
    row["message"] = clean(_rendered(message, fields.values), MAX_TEXT, multiline=True) or None
    _fill(row, message, fields)
    return row


def _record(message: str, level: str, timestamp: str, target: object) -> Fields:
    row = empty_fields(RUSTBUCKET, "error" if level == "ERROR" else "system")
    row["level"] = level
    row["event_time"] = parse_rfc3339(timestamp)
    if isinstance(target, str):
        row["native_type"] = clean_optional(target, MAX_NATIVE_TYPE)
    return row


def _rendered(message: str, values: Mapping[str, Any]) -> str:
    """Returns a JSON record's message as the text layout writes it: `message key=value ...`."""
    parts = [message] if message else []
    parts.extend(f"{key}={value}" for key, value in values.items())
    return " ".join(parts)


def _fill(row: Fields, message: str, fields: _EventFields) -> None:
    """Sets the event type and the fields the message's shape carries."""
    matched = shape_of(message)
    if matched is None:
        return
    shape, found = matched
    row["event_type"] = shape.event_type
    if shape.protocol:
        row["protocol"] = shape.protocol
    _from_groups(row, found.groupdict())
    for name in shape.structured:
        _STRUCTURED[name](row, fields)


def _from_groups(row: Fields, groups: Mapping[str, str | None]) -> None:
    """Sets the fields a formatted message's groups hold."""
    if groups.get("addr"):
        row["source_ip"], row["source_port"] = split_host_port(groups["addr"] or "")
    if groups.get("proto"):
        row["protocol"] = clean_optional((groups["proto"] or "").lower(), MAX_SHORT)
    if "user" in groups:
        row["username"] = clean_optional(groups["user"], MAX_NAME)
    if "user_debug" in groups:
        row["username"] = clean_optional(rust_option(groups["user_debug"]), MAX_NAME)
    if "password" in groups:
        row["password"] = clean_optional(groups["password"], MAX_NAME)
    if groups.get("command") is not None:
        row["command"] = clean_optional(groups["command"], MAX_TEXT, multiline=True)
    if groups.get("method"):
        row["http_method"] = clean_optional(groups["method"], MAX_SHORT)
    if groups.get("url"):
        row["url"] = clean_optional(groups["url"], MAX_URL)
    if groups.get("request") is not None:
        _request(row, groups["request"] or "")


def _client(row: Fields, fields: _EventFields) -> None:
    address = fields.get("client_ip")
    if address:
        row["source_ip"], row["source_port"] = split_host_port(address)


def _protocol(row: Fields, fields: _EventFields) -> None:
    protocol = fields.get("protocol")
    if protocol:
        row["protocol"] = clean_optional(protocol.lower(), MAX_SHORT)


def _credentials(row: Fields, fields: _EventFields) -> None:
    username, password = fields.credentials()
    if row["protocol"] == "ftp":  # FTP logs its username as a Rust Option's Debug
        username = rust_option(username)
    row["username"] = clean_optional(username, MAX_NAME)
    row["password"] = clean_optional(password, MAX_NAME)


def _command(row: Fields, fields: _EventFields) -> None:
    row["command"] = clean_optional(fields.to_end("command"), MAX_TEXT, multiline=True)


def _raw_request(row: Fields, fields: _EventFields) -> None:
    request = fields.to_end("request")
    if request is not None:
        _request(row, request)


def _http(row: Fields, fields: _EventFields) -> None:
    method, path = fields.get("method"), fields.get("path")
    if method:
        row["http_method"] = clean_optional(method, MAX_SHORT)
    if path:
        row["url"] = clean_optional(path, MAX_URL)


_STRUCTURED: Final = {
    "client": _client,
    "protocol": _protocol,
    "credentials": _credentials,
    "command": _command,
    "request": _raw_request,
    "http": _http,
}

_REQUEST_LINE = re.compile(
    r"(?P<method>[A-Za-z]{1,16}) (?P<target>.*?)(?: HTTP/\d(?:\.\d)?)?$", re.DOTALL
)
_USER_AGENT_HEADER = re.compile(r"^User-Agent: ([^\r\n]*)", re.MULTILINE | re.IGNORECASE)


def _request(row: Fields, request: str) -> None:
    """Sets the method, URL and user agent of a raw HTTP request."""
    first_line = request.split("\n", 1)[0].rstrip("\r")
    found = _REQUEST_LINE.match(first_line)
    if found:
        row["http_method"] = clean_optional(found["method"], MAX_SHORT)
        row["url"] = clean_optional(found["target"], MAX_URL)
    agent = _USER_AGENT_HEADER.search(request)
    if agent:
        row["user_agent"] = clean_optional(agent[1], MAX_USER_AGENT)


_RUST_OPTION = re.compile(r"Some\(\"(?P<value>(?:[^\"\\]|\\.)*+)\"\)", re.DOTALL)
_RUST_ESCAPE = re.compile(r"\\(?:u\{(?P<code>[0-9a-fA-F]{1,6})\}|(?P<char>.))", re.DOTALL)
_RUST_ESCAPES: Final = {"n": "\n", "r": "\r", "t": "\t", "0": "\0"}


def rust_option(value: str | None) -> str | None:
    """Returns the string a Rust `Option<String>` Debug holds (`Some("x")`, `None`).

    Anything else is returned as it is: most values are written with Display, raw.
    """
    if value is None or value == "None":
        return None
    found = _RUST_OPTION.fullmatch(value)
    if found is None:
        return value
    return _RUST_ESCAPE.sub(_unescape, found["value"])


def _unescape(found: re.Match[str]) -> str:
    code = found["code"]
    if code is not None:
        number = int(code, 16)
        return chr(number) if number <= 0x10FFFF and not 0xD800 <= number <= 0xDFFF else "\ufffd"
    char = found["char"]
    return _RUST_ESCAPES.get(char, char)
