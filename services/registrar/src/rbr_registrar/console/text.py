"""Hostile text made safe to show: terminal escapes and control characters removed, clipped.

Honeypot logs and model output are written by attackers. Jinja2 escapes HTML; this removes
what escaping leaves: ANSI sequences, control and bidirectional-override characters, and
lines long enough to break a page.
"""

from __future__ import annotations

import re

ANSI_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: titles, hyperlinks
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[@-Z\\-_]"  # other two-character escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
# C0 and C1 controls but tab and newline, DEL, and the bidirectional overrides and isolates
# (text that renders in another order than it reads).
CONTROL_CHARACTERS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
DEFAULT_LIMIT = 2000


def clean(value: object) -> str:
    """Returns the text without terminal escape sequences and control characters."""
    text = "" if value is None else str(value)
    return CONTROL_CHARACTERS.sub("", ANSI_SEQUENCE.sub("", text))


def clip(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """Returns the cleaned text cut at `limit` characters, saying how much was cut."""
    text = clean(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]} … [{len(text) - limit:,} more characters]"
