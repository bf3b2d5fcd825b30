"""Making attacker-controlled text safe to store and show: no control characters, bounded length.

Everything a honeypot logs came from an attacker. Parsed fields are shown in dashboards,
terminals and prompts, so they lose every control character (ANSI escape sequences whole,
so no `[31m` debris is left), the Unicode bidirectional overrides that disguise text, and
whatever does not fit their column. Multi-line fields (commands, messages) keep line breaks
and tabs; single-line fields lose them too.

The honeypot's own secret, the token it registers with and writes into its log, is removed
from every line before anything else reads it (`SecretRedactor`).
"""

from __future__ import annotations

import re
from typing import Final

# ESC-initiated sequences: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), and two-byte
# escapes (ESC + one character); the 8-bit CSI (U+009B) form too.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[@-Z\\-_]"
)
_BIDI = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_CONTROLS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]

_SINGLE_LINE = dict.fromkeys([*_CONTROLS, *_BIDI])
_MULTI_LINE = {code: None for code in _SINGLE_LINE if code not in (0x09, 0x0A)}


def clean(value: str, max_chars: int, *, multiline: bool = False) -> str:
    """Returns the value without control characters, cut to max_chars.

    Args:
        value: attacker-controlled text.
        max_chars: the most characters kept (the column's size).
        multiline: keep line feeds and tabs (commands, messages); carriage returns always go,
            since they are how a payload hides what it does from a terminal.
    """
    if "\x1b" in value or "\x9b" in value:
        value = _ANSI.sub("", value)
    value = value.translate(_MULTI_LINE if multiline else _SINGLE_LINE)
    return value[:max_chars]


def clean_optional(value: str | None, max_chars: int, *, multiline: bool = False) -> str | None:
    """Returns clean(value), or None when there is no value or nothing is left of it."""
    if value is None:
        return None
    cleaned = clean(value, max_chars, multiline=multiline)
    return cleaned or None


def cut_utf8(text: str, max_bytes: int) -> str:
    """Returns the longest prefix of text whose UTF-8 encoding fits in max_bytes."""
    if len(text) * 4 <= max_bytes:
        return text
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", "ignore")


# -- the honeypot's own secrets ------------------------------------------------------------------

REDACTED = "[REDACTED]"
"""What replaces a secret the honeypot wrote into its own log."""

# rustbucket logs the token it registers with: `Generated instance token: <t>` (some versions
# `... token for debugging: <t>`), and the whole payload, `Registration payload:
# RegistrationPayload { name: "...", ..., token: "<t>" }` (Rust Debug). In the JSON log the same
# text sits inside a JSON string, its quotes escaped (`token: \"<t>\"`). A registry answering with
# JSON may echo it (`"token":"<t>"`, logged after `Server response:`).
_INSTANCE_TOKEN = re.compile(
    r"(?P<label>\binstance token(?: for debugging)?: )(?P<secret>[^\s\"\\]+)"
)
_TOKEN_FIELD = re.compile(
    r"(?P<label>(?:\\?\")?\btoken(?:\\?\")?\s*+:\s*+\\?\")(?P<secret>[^\"\\]+)"
)
# The field form is redacted only in the records that carry the honeypot's registration (and in
# a JSON record's own `token` field): elsewhere `token: "..."` is the attacker's text.
_REGISTRATION_CONTEXT: Final = ("egistration", "dentity", "Server response", "HealthCheck")
# Only what the honeypot generates (32 alphanumerics) is remembered: an attacker who writes
# `Generated instance token: <text>` into a payload must not make the parser censor <text>
# in the rest of the object.
_GENERATED_TOKEN = re.compile(r"[A-Za-z0-9]{32}")
_MAX_KNOWN_SECRETS: Final = 32


class SecretRedactor:
    """Removes the honeypot's registration token from one object's lines, before anything else.

    A token found once (its `Generated instance token` line, the registration payload) is also
    replaced wherever it appears again in the object, whatever the line looks like: a registry
    answer echoing it, a version that logs it in another shape. Only values shaped like the
    tokens the honeypot generates are remembered.
    """

    def __init__(self) -> None:
        self._known: list[str] = []

    def redact(self, text: str) -> str:
        """Returns the line with every secret of the honeypot's replaced by REDACTED."""
        for secret in self._known:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if "token" not in text:
            return text
        text = _INSTANCE_TOKEN.sub(self._remember, text)
        if self._has_token_field(text):
            text = _TOKEN_FIELD.sub(self._remember, text)
        return text

    @staticmethod
    def _has_token_field(text: str) -> bool:
        if text.startswith('{"timestamp"') and '"token":' in text:
            return True
        return any(marker in text for marker in _REGISTRATION_CONTEXT)

    def _remember(self, found: re.Match[str]) -> str:
        secret = found["secret"]
        if REDACTED in secret:  # a known secret, already replaced
            return found["label"] + REDACTED
        is_new = _GENERATED_TOKEN.fullmatch(secret) is not None and secret not in self._known
        if is_new and len(self._known) < _MAX_KNOWN_SECRETS:
            self._known.append(secret)
        return found["label"] + REDACTED
