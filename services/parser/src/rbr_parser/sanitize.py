"""Making attacker-controlled text safe to store and show: no control characters, bounded length.

Everything a honeypot logs came from an attacker. Parsed fields are shown in dashboards,
terminals and prompts, so they lose every control character (ANSI escape sequences whole,
so no `[31m` debris is left), the Unicode bidirectional overrides that disguise text, and
whatever does not fit their column. Multi-line fields (commands, messages) keep line breaks
and tabs; single-line fields lose them too.
"""

from __future__ import annotations

import re

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
