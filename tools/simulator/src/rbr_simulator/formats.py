"""Renders single log lines exactly as each real program writes them.

Pure functions of their arguments; each returns the line(s) as text ending in a newline.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rfc3339_micro(moment: datetime) -> str:
    """Returns `moment` (UTC) as tracing-subscriber writes it: `2025-10-28T19:05:32.123456Z`."""
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}Z"
    )


def syslog_time(moment: datetime) -> str:
    """Returns `moment` as classic syslog writes it: `Mar  3 14:02:11` (day padded, no year)."""
    return (
        f"{_MONTHS[moment.month - 1]} {moment.day:2d} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )


def clf_time(moment: datetime) -> str:
    """Returns `moment` (UTC) as the common log format writes it: `28/Oct/2025:19:05:32 +0000`."""
    return (
        f"{moment.day:02d}/{_MONTHS[moment.month - 1]}/{moment.year:04d}:"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} +0000"
    )


def tracing_message(message: str, fields: Mapping[str, str | int], *, quoted: set[str]) -> str:
    """Returns a tracing-subscriber message followed by its `key=value` fields.

    Args:
        message: The event's message.
        fields: Field values in the order the event declares them.
        quoted: Names of the fields recorded with `Debug` (string literals), which tracing
            writes in double quotes; the others are recorded with `Display` and written raw.
    """
    if not fields:
        return message
    rendered = " ".join(
        f'{key}="{value}"' if key in quoted else f"{key}={value}" for key, value in fields.items()
    )
    return f"{message} {rendered}"


def rustbucket_line(moment: datetime, level: str, target: str, message: str) -> str:
    """Returns one rustbucket (tracing-subscriber `fmt`, no ANSI) record.

    The level is right-aligned to five characters, so INFO and WARN are preceded by two
    spaces. A message holding newlines spills onto continuation lines, as in the real log.

    Args:
        moment: When the event happened (UTC).
        level: INFO, WARN, ERROR or DEBUG.
        target: The tracing target, e.g. `rustbucket::handler`.
        message: The message, fields included.
    """
    return f"{rfc3339_micro(moment)} {level:>5} {target}: {message}\n"


def cowrie_line(event: Mapping[str, object]) -> str:
    """Returns one Cowrie JSON log line (compact separators, non-ASCII escaped, like Cowrie)."""
    return json.dumps(event, separators=(",", ":")) + "\n"


def sshd_line(moment: datetime, host: str, pid: int, message: str) -> str:
    """Returns one OpenSSH auth.log line as rsyslog writes it."""
    return f"{syslog_time(moment)} {host} sshd[{pid}]: {message}\n"


def escape_http_field(value: str) -> str:
    r"""Returns `value` escaped the way nginx escapes `"`, `\` and line breaks in access logs.

    Other control characters are left raw, as a less careful server would write them; the
    simulator relies on that to ship hostile bytes inside otherwise well-formed lines.
    """
    return (
        value.replace("\\", "\\x5C")
        .replace('"', "\\x22")
        .replace("\n", "\\x0A")
        .replace("\r", "\\x0D")
    )


def http_access_line(
    *,
    client_ip: str,
    moment: datetime,
    request_line: str,
    status: int,
    size: int,
    referer: str,
    user_agent: str,
) -> str:
    """Returns one line of the HTTP combined access log.

    The request line, referer and user agent must already be escaped (`escape_http_field`).
    """
    return (
        f'{client_ip} - - [{clf_time(moment)}] "{request_line}" {status} {size} '
        f'"{referer}" "{user_agent}"\n'
    )
