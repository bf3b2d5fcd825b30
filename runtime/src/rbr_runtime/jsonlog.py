"""Structured JSON logs, one object per line, with context such as bucket name and event id.

`log_context(bucket=..., event_id=...)` adds fields to every record logged inside it, in this
thread or task, so handlers need not pass them to each log call.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import orjson

_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "rbr_log_context", default=MappingProxyType({})
)
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
MAX_FIELD_CHARS = 2000


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Adds fields to every log record emitted inside the block."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def _clip(value: Any) -> Any:
    # Log fields may hold attacker-controlled text from honeypot logs; keep lines bounded.
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        return value[:MAX_FIELD_CHARS] + "…"
    return value


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, context, extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """Returns the record as a JSON line."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": _clip(record.getMessage()),
        }
        entry.update({key: _clip(value) for key, value in _context.get().items()})
        entry.update(
            {
                key: _clip(value)
                for key, value in vars(record).items()
                if key not in _RESERVED and not key.startswith("_")
            }
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal, with the context fields appended."""

    def format(self, record: logging.LogRecord) -> str:
        """Returns the record as one line of text."""
        base = super().format(record)
        fields = {**_context.get()}
        fields.update(
            {
                key: value
                for key, value in vars(record).items()
                if key not in _RESERVED and not key.startswith("_")
            }
        )
        suffix = " ".join(f"{key}={_clip(value)}" for key, value in fields.items())
        return f"{base} {suffix}" if suffix else base


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Sends every log record to stderr as JSON (or text), replacing existing handlers."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(
            TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
