"""Making hostile log text safe to store, show and put in a prompt.

Every value derived from a honeypot's logs is attacker-controlled. Before it goes anywhere
(a digest, a prompt, an alert) it is cleaned: secrets are redacted (an attacker, or a careless
operator, may put real credentials in a log line; they must not travel to a third-party API
or to chat channels), control and invisible formatting characters are removed (terminal
escapes, bidi overrides, zero-width characters that hide text from a reader), whitespace is
collapsed and the length is capped.
"""

from __future__ import annotations

import re
import unicodedata

REDACTED = "[REDACTED]"
MAX_REDACT_CHARS = 100_000
"""The most text the secret patterns run on at once (they are linear, but bounded anyway)."""

# Each pattern matches a secret (or the secret part of a match, group "secret" when present).
_SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "private-key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?"
            r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|$)",
            re.DOTALL,
        ),
    ),
    ("anthropic-key", re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{10,}")),
    ("openai-key", re.compile(r"\bsk-(?:proj-|live-|test-)?[A-Za-z0-9_\-]{20,}")),
    ("aws-access-key", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b")),
    (
        "aws-secret-key",
        re.compile(
            r"(?i)(?P<label>aws_?secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?)"
            r"(?P<secret>[A-Za-z0-9/+=]{30,})"
        ),
    ),
    ("github-token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})")),
    ("gitlab-token", re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}")),
    ("slack-token", re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}")),
    (
        "slack-webhook",
        re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_\-]+"),
    ),
    ("google-api-key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b")),
    ("stripe-key", re.compile(r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{16,}")),
    (
        "jwt",
        re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    ),
    (
        "url-credentials",
        # Starts only where a scheme can start (not inside one) and never backtracks, so a
        # long run like `a.a.a.a...` costs one pass, not one pass per `a`.
        re.compile(
            r"(?P<label>(?<![a-zA-Z0-9+.\-])[a-zA-Z][a-zA-Z0-9+.\-]*+://[^\s/:@]++:)"
            r"(?P<secret>[^\s/@]++)(?=@)"
        ),
    ),
    (
        "bearer-token",
        re.compile(
            r"(?i)(?P<label>\b(?:bearer|token|basic)\s+)(?P<secret>[A-Za-z0-9._~+/\-]{20,}=*)"
        ),
    ),
    (
        # rustbucket logs its own registration token (`Generated instance token: <t>`) and
        # its registration payload (`RegistrationPayload { ..., token: "<t>" }`), and a
        # registry may echo it as JSON; in the JSON log all of it sits in escaped strings.
        # The parser redacts it before storage; this is the second line of defence.
        "instance-token",
        re.compile(
            r"(?i)(?P<label>\binstance token(?: for debugging)?:\s*+)"
            r"(?P<secret>[^\s\"'\\,;&}\[]{8,})"
        ),
    ),
    (
        "token-field",
        re.compile(
            r"(?P<label>(?:\\*+\")?(?<![\w.\-])token(?:\\*+\")?\s*+[:=]\s*+(?:\\*+\")?)"
            r"(?P<secret>[A-Za-z0-9._~+/\-]{16,})"
        ),
    ),
    (
        "assigned-secret",
        # The name is matched once per name (it starts where no name character precedes, and
        # the atomic group never gives back what it took): `secret-secret-secret...` without
        # a `=` costs one pass. Two free-running quantifiers around the keyword would retry
        # every split of every name at every word boundary (seconds for a few kilobytes).
        re.compile(
            r"(?i)(?P<label>(?<![\w.\-])(?>[\w.\-]*?(?:api[_\-]?key|secret|access[_\-]?token"
            r"|auth[_\-]?token|client[_\-]?secret|private[_\-]?key)[\w.\-]*+)"
            r"[\"']?\s*+[:=]\s*+[\"']?)"
            r"(?P<secret>[^\s\"',;&]{8,})"
        ),
    ),
)

# Cc (controls) and Cf (invisible formatting: bidi overrides, zero-width joiners...), plus the
# line and paragraph separators: none of them belongs in a digest shown to a model or a person.
_DROPPED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
_WHITESPACE = re.compile(r"\s+")


def redact_secrets(text: str) -> str:
    """Replaces every secret the patterns recognise by `[REDACTED]` (label kept).

    Raises:
        ValueError: text is longer than MAX_REDACT_CHARS (callers cap it first: see clean).
    """
    if len(text) > MAX_REDACT_CHARS:
        raise ValueError(f"{len(text)} characters is more than redaction is run on")
    for _name, pattern in _SECRET_PATTERNS:
        text = pattern.sub(_replacement, text)
    return text


def _replacement(match: re.Match[str]) -> str:
    groups = match.groupdict()
    if groups.get("secret") is not None:
        return f"{groups.get('label') or ''}{REDACTED}"
    return REDACTED


def strip_controls(text: str) -> str:
    """Removes control and invisible formatting characters; tabs and newlines become spaces."""
    return "".join(
        " " if char in "\t\n\r\v\f" else char
        for char in text
        if char in "\t\n\r\v\f" or unicodedata.category(char) not in _DROPPED_CATEGORIES
    )


def clip(text: str, limit: int) -> str:
    """Caps text at `limit` characters, marking the cut with an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + "…"


def clean(value: object, limit: int = 300) -> str:
    """Returns hostile text made safe: secrets redacted, controls removed, spaces collapsed, capped.

    Redaction runs before the cap (a cut must not leave half a secret behind) and on a bounded
    prefix (so a megabyte-long record costs no more than a few kilobytes of regex work).
    """
    text = "" if value is None else str(value)
    text = text[: min(max(limit * 4, 4096), MAX_REDACT_CHARS)]
    text = strip_controls(text)
    text = redact_secrets(text)
    text = _WHITESPACE.sub(" ", text).strip()
    return clip(text, limit)
