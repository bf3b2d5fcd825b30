"""Recognising log lines and extracting their fields, one format at a time.

rustbucket (`rbr_parser.rustbucket`), Cowrie JSON, syslog (OpenSSH in detail) and the HTTP
combined/common access log. Every extractor returns a `Fields` dict of `logs` columns, cleaned
of control characters and cut to the column's size, so nothing attacker-controlled reaches the
database or a screen unbounded.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final

import orjson

from rbr_parser.sanitize import clean, clean_optional

Fields = dict[str, Any]

# Column sizes (see the `logs` table).
MAX_NAME: Final = 255
MAX_URL: Final = 2048
MAX_TEXT: Final = 16_000  # TEXT holds 65,535 bytes: 16,000 characters of 4 bytes fit.
MAX_SESSION: Final = 64
MAX_USER_AGENT: Final = 512
MAX_SHORT: Final = 16
MAX_NATIVE_TYPE: Final = 64

RUSTBUCKET: Final = "rustbucket"
COWRIE: Final = "cowrie"
SSHD: Final = "sshd"
SYSLOG: Final = "syslog"
HTTP: Final = "http"
UNKNOWN: Final = "unknown"

UNPARSED: Final = "unparsed"
OTHER: Final = "other"

PARSED_COLUMNS: Final = (
    "log_format",
    "event_type",
    "native_type",
    "event_time",
    "level",
    "protocol",
    "source_ip",
    "source_port",
    "username",
    "password",
    "command",
    "url",
    "http_method",
    "http_status",
    "user_agent",
    "file_sha256",
    "session",
    "message",
)
"""The `logs` columns parsing fills (a record lacking one leaves it NULL)."""


@dataclass(frozen=True)
class ParseContext:
    """What the parser knows about an object besides its lines.

    Attributes:
        reference_time: about when the log was written (the extraction time); classic syslog
            lines carry no year, which is taken so that the line is not in the future of it.
        syslog_timezone: the zone classic syslog timestamps are in.
    """

    reference_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    syslog_timezone: tzinfo = UTC


# -- shared helpers ------------------------------------------------------------------------


_EMPTY_FIELDS: Final[Fields] = dict.fromkeys(PARSED_COLUMNS)


def empty_fields(log_format: str, event_type: str) -> Fields:
    """Returns a row of the format and event type with every other parsed column empty."""
    row: Fields = _EMPTY_FIELDS.copy()  # a copy is cheaper than building one, per record
    row["log_format"] = log_format
    row["event_type"] = event_type
    return row


def unparsed(text: str) -> Fields:
    """Returns the fields of a record no format recognised: kept whole, typed `unparsed`."""
    row = empty_fields(UNKNOWN, UNPARSED)
    row["message"] = clean(text, MAX_TEXT, multiline=True) or None
    return row


def valid_ip(value: str | None) -> str | None:
    """Returns the IP literal normalised, or None when value is not one."""
    if not value or len(value) > 45:
        return None
    return _normalised_ip(value)


@functools.lru_cache(maxsize=4096)
def _normalised_ip(value: str) -> str | None:
    # Cached: a log repeats its addresses, and parsing one is a tenth of a record's cost.
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def valid_port(value: object) -> int | None:
    """Returns a TCP port number, or None when value is not one."""
    try:
        port = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return port if 0 <= port <= 65535 else None


def split_host_port(value: str) -> tuple[str | None, int | None]:
    """Splits `1.2.3.4:5678`, `[::1]:5678`, `1.2.3.4` or `::1` into an IP and a port."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return valid_ip(host), valid_port(rest[1:]) if rest.startswith(":") else None
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return valid_ip(host), valid_port(port)
    return valid_ip(value), None


def _sane_time(moment: datetime) -> datetime | None:
    # Attacker-influenced timestamps must still fit a DATETIME column.
    if not 1970 <= moment.year <= 9999:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        # 9999-12-31T23:59:59-01:00 is past datetime.max once in UTC.
        return moment.astimezone(UTC)
    except OverflowError:
        return None


def parse_rfc3339(text: str) -> datetime | None:
    """Parses an RFC 3339 timestamp (naive ones are taken as UTC); None if it is not one."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return _sane_time(moment)


_MONTHS: Final = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}


# -- Cowrie ----------------------------------------------------------------------------------

_COWRIE_TYPES: Final = {
    "cowrie.session.connect": "connect",
    "cowrie.client.version": "client_version",
    "cowrie.client.kex": "client_version",
    "cowrie.client.fingerprint": "login_attempt",
    "cowrie.login.failed": "login_failed",
    "cowrie.login.success": "login_success",
    "cowrie.command.input": "command",
    "cowrie.command.failed": "command_failed",
    "cowrie.command.success": "command",
    "cowrie.session.file_download": "download",
    "cowrie.session.file_download.failed": "download_failed",
    "cowrie.session.file_upload": "upload",
    "cowrie.session.closed": "disconnect",
    "cowrie.session.params": "session",
    "cowrie.client.size": "session",
    "cowrie.client.var": "session",
    "cowrie.log.closed": "session",
    "cowrie.direct-tcpip.request": "tunnel",
    "cowrie.direct-tcpip.data": "tunnel",
}
_COWRIE_CREDENTIALS: Final = {"login_failed", "login_success", "login_attempt"}
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def load_json_object(line: str) -> dict[str, Any] | None:
    """Returns the line's JSON object, or None when the line is not one."""
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


def is_cowrie(event: dict[str, Any]) -> bool:
    """Tells whether a JSON object is a Cowrie event (has a string `eventid`)."""
    return isinstance(event.get("eventid"), str)


def looks_like_cowrie(line: str) -> bool:
    """Tells whether a line that is not valid JSON was meant as a Cowrie event (truncated)."""
    return line.startswith('{"eventid"')


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(str(item) for item in value)
    return str(value)


def parse_cowrie(event: dict[str, Any]) -> Fields:
    """Returns the fields of a Cowrie JSON event; unknown event ids are typed `other`."""
    eventid: str = event["eventid"]
    event_type = _COWRIE_TYPES.get(eventid, OTHER)
    row = empty_fields(COWRIE, event_type)
    row["native_type"] = clean_optional(eventid, MAX_NATIVE_TYPE)
    row["event_time"] = parse_rfc3339(str(event.get("timestamp", "")))
    row["source_ip"] = valid_ip(_text(event.get("src_ip")))
    row["source_port"] = valid_port(event.get("src_port"))
    row["session"] = clean_optional(_text(event.get("session")), MAX_SESSION)
    row["protocol"] = clean_optional(_text(event.get("protocol")), MAX_SHORT)
    row["message"] = clean_optional(_text(event.get("message")), MAX_TEXT, multiline=True)
    if event_type in _COWRIE_CREDENTIALS:
        row["username"] = clean_optional(_text(event.get("username")), MAX_NAME)
        row["password"] = clean_optional(_text(event.get("password")), MAX_NAME)
    if "input" in event:
        row["command"] = clean_optional(_text(event["input"]), MAX_TEXT, multiline=True)
    if "url" in event:
        row["url"] = clean_optional(_text(event["url"]), MAX_URL)
    shasum = _text(event.get("shasum"))
    if shasum and _SHA256.fullmatch(shasum):
        row["file_sha256"] = shasum.lower()
    return row


# -- syslog and OpenSSH -----------------------------------------------------------------------

_SYSLOG_CLASSIC = re.compile(
    r"(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (?P<day>[ \d]?\d) "
    r"(?P<hh>\d\d):(?P<mm>\d\d):(?P<ss>\d\d) (?P<host>\S++) "
    r"(?P<program>[^\s\[\]:]{1,64})(?:\[(?P<pid>\d{1,10})\])?: (?P<message>.*)",
    re.DOTALL,
)
_SYSLOG_ISO = re.compile(
    r"(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) (?P<host>\S++) "
    r"(?P<program>[^\s\[\]:]{1,64})(?:\[(?P<pid>\d{1,10})\])?: (?P<message>.*)",
    re.DOTALL,
)
_SSHD_PROGRAMS: Final = frozenset({"sshd", "sshd-session", "sshd-auth"})
_PEER = r"(?P<ip>\S+) port (?P<port>\d+)"
_SSHD_MESSAGES: Final = tuple(
    (re.compile(pattern, re.DOTALL), event_type)
    for pattern, event_type in (
        (
            rf"Failed (?P<method>\S+) for (?:invalid user )?(?P<user>.*) from {_PEER}",
            "login_failed",
        ),
        (rf"Accepted (?P<method>\S+) for (?P<user>.*) from {_PEER}", "login_success"),
        (r"Invalid user (?P<user>.*) from (?P<ip>\S+)(?: port (?P<port>\d+))?", "invalid_user"),
        (
            rf"Connection closed by (?:(?:invalid|authenticating) user (?P<user>.*) )?{_PEER}",
            "disconnect",
        ),
        (
            rf"Disconnected from (?:(?:invalid |authenticating )?user (?P<user>.*) )?{_PEER}",
            "disconnect",
        ),
        (rf"Received disconnect from {_PEER}", "disconnect"),
        (
            rf"Connection reset by (?:(?:invalid|authenticating) user (?P<user>.*) )?{_PEER}",
            "disconnect",
        ),
        (
            rf"Disconnecting (?:(?:invalid|authenticating) user (?P<user>.*) )?{_PEER}",
            "disconnect",
        ),
        (rf"Unable to negotiate with {_PEER}", "disconnect"),
        (rf"Connection from {_PEER} on ", "connect"),
        (
            r"pam_unix\(sshd:auth\): authentication failure;.*?\brhost=(?P<ip>\S*)"
            r"(?:\s+user=(?P<user>\S+))?",
            "login_failed",
        ),
        (
            r"pam_unix\(sshd:session\): session (?:opened|closed) for user (?P<user>[^\s(]+)",
            "session",
        ),
        (
            rf"error: maximum authentication attempts exceeded for (?:invalid user )?"
            rf"(?P<user>.*) from {_PEER}",
            "error",
        ),
        (r"Server listening on ", "system"),
        (r"Received signal ", "system"),
        (r"error: ", "error"),
        (rf"from {_PEER}", OTHER),
    )
)


def match_syslog(line: str) -> re.Match[str] | None:
    """Returns the match when the line is a syslog line (classic or RFC 3339 timestamp)."""
    return _SYSLOG_CLASSIC.match(line) or _SYSLOG_ISO.match(line)


def syslog_time(found: re.Match[str], context: ParseContext) -> datetime | None:
    """Returns the time of a syslog line.

    Classic lines carry no year: they get the reference time's, or the year before when that
    would put them more than two days in its future (a log read just after New Year).
    """
    iso_time = found.groupdict().get("ts")
    if iso_time:
        return parse_rfc3339(iso_time)
    reference = context.reference_time.astimezone(context.syslog_timezone)
    for year in (reference.year, reference.year - 1):
        try:
            moment = datetime(
                year,
                _MONTHS[found["mon"]],
                int(found["day"]),
                int(found["hh"]),
                int(found["mm"]),
                int(found["ss"]),
                tzinfo=context.syslog_timezone,
            )
        except ValueError:
            continue  # 29 February of a year without one
        if moment <= reference + timedelta(days=2):
            return _sane_time(moment)
    return None


def parse_syslog(found: re.Match[str], context: ParseContext) -> Fields:
    """Returns the fields of a syslog line; OpenSSH's messages are understood in detail."""
    program = found["program"]
    message = found["message"].rstrip("\r")
    is_sshd = program in _SSHD_PROGRAMS
    row = empty_fields(SSHD if is_sshd else SYSLOG, OTHER)
    row["native_type"] = clean_optional(program, MAX_NATIVE_TYPE)
    row["event_time"] = syslog_time(found, context)
    row["message"] = clean(message, MAX_TEXT, multiline=True) or None
    if is_sshd:
        row["protocol"] = "ssh"
        _sshd_fields(row, message)
    return row


# rsyslog folds repeats: `message repeated 3 times: [ Failed password for root from ...]`.
_REPEATED = re.compile(r"message repeated \d{1,10} times: \[ ?(?P<message>.*)\]", re.DOTALL)


def _sshd_fields(row: Fields, message: str) -> None:
    """Sets the event type and fields of an OpenSSH message.

    User names are what sshd logs, spaces included (`Invalid user John Smith from ...`); the
    peer is the last `from <ip> port <n>` of the message, since sshd writes it after the
    user name, which an attacker chooses.
    """
    repeated = _REPEATED.fullmatch(message)
    if repeated is not None:
        message = repeated["message"]
    for pattern, event_type in _SSHD_MESSAGES:
        found = pattern.match(message) if event_type != OTHER else pattern.search(message)
        if found is None:
            continue
        row["event_type"] = event_type
        groups = found.groupdict()
        row["source_ip"] = valid_ip(groups.get("ip"))
        row["source_port"] = valid_port(groups.get("port"))
        row["username"] = clean_optional(groups.get("user"), MAX_NAME)
        return


# -- HTTP access log ---------------------------------------------------------------------------

_HTTP_ACCESS = re.compile(
    r"(?P<ip>\S++) \S++ (?P<user>\S++) "
    r"\[(?P<day>\d\d)/(?P<mon>[A-Z][a-z]{2})/(?P<year>\d{4}):(?P<hh>\d\d):(?P<mm>\d\d):(?P<ss>\d\d)"
    r" (?P<tz>[+-]\d{4})\] "
    r'"(?P<request>(?:[^"\\]|\\.)*+)" (?P<status>\d{3}) (?P<size>\d+|-)'
    r'(?: "(?P<referer>(?:[^"\\]|\\.)*+)" "(?P<agent>(?:[^"\\]|\\.)*+)")?',
    re.DOTALL,
)


_REQUEST_LINE = re.compile(
    r"(?P<method>[A-Za-z]{1,16}) (?P<target>.*?)(?: HTTP/\d(?:\.\d)?)?$", re.DOTALL
)


def match_http(line: str) -> re.Match[str] | None:
    """Returns the match when the line is an access-log line (combined or common)."""
    return _HTTP_ACCESS.match(line)


def _clf_time(found: re.Match[str]) -> datetime | None:
    month = _MONTHS.get(found["mon"])
    if month is None:
        return None
    tz = found["tz"]
    offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5]))
    try:
        moment = datetime(
            int(found["year"]),
            month,
            int(found["day"]),
            int(found["hh"]),
            int(found["mm"]),
            int(found["ss"]),
            tzinfo=UTC,
        )
        # The offset can carry a time at either end of the calendar past datetime's range.
        moment = moment - offset if tz[0] == "+" else moment + offset
    except (ValueError, OverflowError):
        return None
    return _sane_time(moment)


def parse_http(found: re.Match[str]) -> Fields:
    """Returns the fields of an access-log line."""
    row = empty_fields(HTTP, "http_request")
    row["protocol"] = "http"
    row["event_time"] = _clf_time(found)
    row["source_ip"] = valid_ip(found["ip"])
    request = found["request"]
    row["message"] = clean(request, MAX_TEXT, multiline=True) or None
    request_line = _REQUEST_LINE.fullmatch(request)
    if request_line:
        row["http_method"] = clean_optional(request_line["method"], MAX_SHORT)
        row["url"] = clean_optional(request_line["target"], MAX_URL)
    row["http_status"] = int(found["status"])
    agent = found["agent"]
    if agent and agent != "-":
        row["user_agent"] = clean_optional(agent, MAX_USER_AGENT)
    user = found["user"]
    if user != "-":
        row["username"] = clean_optional(user, MAX_NAME)
    return row
