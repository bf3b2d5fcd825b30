"""Reading a bucket's `/update_bucket` answer and classifying what went wrong.

A bucket is a honeypot: its answers are attacker-controlled. The answer must have the shape
the original Rustbucket Registry defined, every field short text without control characters;
any deviation is a `bad_response` with a reason of our own wording, never the bucket's text.
"""

from __future__ import annotations

import ssl
import unicodedata
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from rbr_schemas import BucketUpdate, PollErrorClass

MAX_FIELD_CHARS = 255
MAX_ERROR_CHARS = 300
UPDATE_FIELDS = tuple(BucketUpdate.model_fields)


class BadAnswer(ValueError):
    """The answer is not a usable `/update_bucket` answer; the message says why."""


@dataclass(frozen=True)
class Answer:
    """A valid answer: the bucket's status word and its update fields."""

    status: str | None
    updates: BucketUpdate


def sanitise(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """Returns text fit for an event or a log: no control characters, bounded."""
    cleaned = "".join(
        ch if unicodedata.category(ch) not in ("Cc", "Cf") else "?" for ch in text[: limit * 2]
    )
    return cleaned[:limit]


def _text_field(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadAnswer(f"{where} is not a string")
    if len(value) > MAX_FIELD_CHARS:
        raise BadAnswer(f"{where} is longer than {MAX_FIELD_CHARS} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value):
        raise BadAnswer(f"{where} contains control characters")
    return value


def _entry_for(entries: list[Any], name: str) -> dict[str, Any]:
    objects = [entry for entry in entries if isinstance(entry, dict)]
    if len(objects) != len(entries):
        raise BadAnswer("updates holds something other than objects")
    for entry in objects:
        if entry.get("name") == name:
            return entry
    first = objects[0]
    if first.get("name") is not None:
        raise BadAnswer("answer describes another bucket (updates[0].name differs)")
    return first


def parse_answer(body: bytes, name: str) -> Answer:
    """Validates an `/update_bucket` answer of the bucket named `name`.

    The shape the original Rustbucket Registry defined: `{"status": str, "updates":
    [{"name", "ip_address", "operating_system", "cpu_usage", "memory_usage", "disk_space",
    "uptime", "connections"}]}`; the entry with the bucket's name is used (or the only,
    unnamed, one).

    Raises:
        BadAnswer: the answer is not of that shape, with the reason.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadAnswer("answer is not JSON") from None
    if not isinstance(document, dict):
        raise BadAnswer("answer is not a JSON object")
    status = _text_field(document.get("status"), "status")
    entries = document.get("updates")
    if entries is None:
        raise BadAnswer("answer has no updates")
    if not isinstance(entries, list):
        raise BadAnswer("updates is not a list")
    if not entries:
        raise BadAnswer("updates is empty")
    entry = _entry_for(entries, name)
    fields = {field: _text_field(entry.get(field), f"updates.{field}") for field in UPDATE_FIELDS}
    return Answer(status=status, updates=BucketUpdate(**fields))


def _caused_by_tls(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(error) or "SSL" in type(error).__name__


# What an exception type means, most specific first; the reason's text follows the colon.
_ERROR_KINDS: tuple[tuple[type[BaseException], PollErrorClass, str, bool], ...] = (
    (httpx.ConnectError, PollErrorClass.CONNECT, "cannot connect", True),
    (httpx.RemoteProtocolError, PollErrorClass.CONNECT, "connection broken", True),
    (httpx.NetworkError, PollErrorClass.CONNECT, "network error", False),
    (httpx.HTTPError, PollErrorClass.BAD_RESPONSE, "HTTP error", False),
)


def classify_error(error: BaseException, timeout: float) -> tuple[PollErrorClass, str]:
    """Returns the error class and a short, sanitised reason for a failed call."""
    if isinstance(error, TimeoutError | httpx.TimeoutException):
        return PollErrorClass.TIMEOUT, f"no complete answer within {timeout:g}s"
    if _caused_by_tls(error):
        return PollErrorClass.TLS, sanitise(f"TLS failure: {error}")
    for kind, error_class, label, with_text in _ERROR_KINDS:
        if isinstance(error, kind):
            text = str(error) if with_text else type(error).__name__
            return error_class, sanitise(f"{label}: {text}")
    return PollErrorClass.CONNECT, sanitise(f"unexpected failure: {type(error).__name__}")


def classify_status(code: int) -> tuple[PollErrorClass, str]:
    """Returns the error class and reason for a non-200 answer."""
    if code in (401, 403):
        return PollErrorClass.AUTH, f"the bucket refused the registry's token (HTTP {code})"
    return PollErrorClass.HTTP_STATUS, f"HTTP {code}"
