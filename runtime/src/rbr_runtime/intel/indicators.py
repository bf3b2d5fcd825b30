"""Indicators of compromise: kinds, normalisation and stable identities.

Values come from honeypot logs or from a model reading them, so they are hostile text:
normalisation undoes the usual defanging (`hxxp://`, `1.2.3[.]4`, `example(dot)com`, `[:]`),
lower-cases what is case-insensitive, splits URLs into their parts, and refuses what is not a
well-formed value of its kind (a "sha256" that is not 64 hex digits is no indicator). One
indicator has one identity fleet-wide, `type:value`, and ids derived from it alone, so the same
indicator always carries the same id in every feed and export.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

NAMESPACE = uuid.UUID("0b1c9c52-5a55-4c36-8f0e-3d1a1f1f7a6e")
MAX_VALUE_CHARS = 2048
MAX_COMMAND_CHARS = 1000
MAX_NAME_CHARS = 255


class IndicatorType(StrEnum):
    """Kinds of indicator the registry records."""

    IP = "ip"
    DOMAIN = "domain"
    URL = "url"
    SHA256 = "sha256"
    SHA1 = "sha1"
    MD5 = "md5"
    CREDENTIAL = "credential"
    USERNAME = "username"
    PASSWORD = "password"  # noqa: S105 - an indicator kind, not a secret
    COMMAND = "command"


HASH_TYPES = (IndicatorType.SHA256, IndicatorType.SHA1, IndicatorType.MD5)
_HASH_BY_LENGTH = {64: IndicatorType.SHA256, 40: IndicatorType.SHA1, 32: IndicatorType.MD5}

# Defanged forms seen in threat reports and in model answers, and what they stand for.
_DEFANGED = (
    (re.compile(r"^h[x*]{2}p(s?)(?=\[?:)", re.IGNORECASE), r"http\1"),
    (re.compile(r"^fxp(?=\[?:)", re.IGNORECASE), "ftp"),
    (re.compile(r"\[://\]"), "://"),
    (re.compile(r"\[:\]"), ":"),
    (re.compile(r"\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|\{dot\}", re.IGNORECASE), "."),
    (re.compile(r"\[/\]"), "/"),
    (re.compile(r"\[@\]|\[at\]|\(at\)", re.IGNORECASE), "@"),
)
_SPACED_DOT = re.compile(r"\s+dot\s+", re.IGNORECASE)
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$"
)
_HEX = re.compile(r"^[0-9a-f]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def refang(text: str) -> str:
    """Undoes the usual defanging of URLs, domains and addresses (hxxp, [.], (dot), [:])."""
    value = text.strip()
    for pattern, replacement in _DEFANGED:
        value = pattern.sub(replacement, value)
    if " " in value and "dot" in value.lower() and "/" not in value:
        value = _SPACED_DOT.sub(".", value)
    return value


@dataclass(frozen=True)
class UrlParts:
    """A URL split into the parts feeds and blocklists use."""

    scheme: str
    host: str
    port: int | None
    path: str
    query: str

    def as_dict(self) -> dict[str, str | int | None]:
        """Returns the parts as a JSON-ready dict."""
        return {
            "scheme": self.scheme,
            "host": self.host,
            "port": self.port,
            "path": self.path,
            "query": self.query,
        }


@dataclass(frozen=True)
class Indicator:
    """One normalised indicator, with what normalisation learnt about it."""

    type: IndicatorType
    value: str
    url: UrlParts | None = None

    @property
    def key(self) -> str:
        """Returns the indicator's identity fleet-wide (the `iocs` topic's key)."""
        return indicator_key(self.type, self.value)


def indicator_key(kind: str, value: str) -> str:
    """Returns the identity of an indicator: `type:value`."""
    return f"{kind}:{value}"


def indicator_uuid(kind: str, value: str) -> uuid.UUID:
    """Returns the stable UUID of an indicator (the same in every feed, every time)."""
    return uuid.uuid5(NAMESPACE, indicator_key(kind, value))


def key_sha256(kind: str, value: str) -> str:
    """Returns the SHA-256 (hex) of the indicator's identity: its unique key in `iocs`."""
    return hashlib.sha256(indicator_key(kind, value).encode()).hexdigest()


def normalise_ip(text: str) -> str | None:
    """Returns the canonical form of an IP address (defanged or with a port), or None."""
    value = refang(text).strip("[] ")
    if value.count(":") == 1 and "." in value:  # 1.2.3.4:22
        value = value.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def is_public_ip(value: str) -> bool:
    """Tells whether an address is globally routable (not private, reserved, loopback...)."""
    try:
        return ipaddress.ip_address(value).is_global
    except ValueError:
        return False


def normalise_domain(text: str) -> str | None:
    """Returns a lower-case domain name without its trailing dot, or None if it is not one."""
    value = refang(text).strip().lower().rstrip(".")
    try:
        value = value.encode("idna").decode("ascii") if not value.isascii() else value
    except UnicodeError:
        return None
    return value if _DOMAIN.match(value) else None


def normalise_hash(text: str) -> Indicator | None:
    """Returns a hash indicator (its kind told by its length), or None if not hex."""
    value = text.strip().lower()
    if value.startswith(("sha256:", "sha1:", "md5:")):
        value = value.split(":", 1)[1]
    kind = _HASH_BY_LENGTH.get(len(value))
    if kind is None or not _HEX.match(value):
        return None
    return Indicator(kind, value)


def normalise_url(text: str) -> Indicator | None:
    """Returns a URL indicator with its parts, or None if it is no usable URL.

    The scheme and host are lower-cased, a default port dropped, fragments removed; a value
    without a scheme but starting with a host gets `http://`.
    """
    value = refang(text)
    if _CONTROL.search(value) or " " in value or len(value) > MAX_VALUE_CHARS:
        return None
    if "://" not in value:
        value = f"http://{value}"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in ("http", "https", "ftp", "tftp") or not host:
        return None
    if normalise_ip(host) is None and normalise_domain(host) is None:
        return None
    if port in (None, {"http": 80, "https": 443, "ftp": 21, "tftp": 69}[scheme]):
        port = None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    path = parts.path or "/"
    canonical = urlunsplit((scheme, netloc, path, parts.query, ""))
    return Indicator(
        IndicatorType.URL,
        canonical,
        UrlParts(scheme=scheme, host=host, port=port, path=path, query=parts.query),
    )


def normalise(kind: str, text: str) -> Indicator | None:
    """Returns the normalised indicator of a kind, or None when the value is not one."""
    if not isinstance(text, str) or not text.strip() or kind not in _NORMALISERS:
        return None
    return _NORMALISERS[kind](text)


def _ip(text: str) -> Indicator | None:
    ip = normalise_ip(text)
    return Indicator(IndicatorType.IP, ip) if ip else None


def _domain(text: str) -> Indicator | None:
    domain = normalise_domain(text)
    return Indicator(IndicatorType.DOMAIN, domain) if domain else None


def _text(kind: IndicatorType, value: str, limit: int) -> Indicator | None:
    if _CONTROL.search(value) or len(value) > limit:
        return None
    return Indicator(kind, value)


_NORMALISERS: dict[str, Callable[[str], Indicator | None]] = {
    IndicatorType.IP: _ip,
    IndicatorType.DOMAIN: _domain,
    IndicatorType.URL: normalise_url,
    IndicatorType.SHA256: normalise_hash,
    IndicatorType.SHA1: normalise_hash,
    IndicatorType.MD5: normalise_hash,
    IndicatorType.COMMAND: lambda text: _text(IndicatorType.COMMAND, text, MAX_COMMAND_CHARS),
    IndicatorType.USERNAME: lambda text: _text(IndicatorType.USERNAME, text, MAX_NAME_CHARS),
    IndicatorType.PASSWORD: lambda text: _text(IndicatorType.PASSWORD, text, MAX_NAME_CHARS),
    IndicatorType.CREDENTIAL: lambda text: _text(IndicatorType.CREDENTIAL, text, MAX_NAME_CHARS),
}


def credential(username: str, password: str) -> str:
    """Returns the value of a credential indicator: `username:password`."""
    return f"{username}:{password}"
