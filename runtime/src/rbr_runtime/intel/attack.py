"""The MITRE ATT&CK Enterprise technique list, shipped in the repo with its version.

`attack_techniques.json` beside this module is the official ATT&CK data trimmed to technique
id, name, tactics and STIX id, for techniques neither revoked nor deprecated; regenerate it
with `tools/attack_techniques.py` from the official `enterprise-attack-<version>.json` bundle.
Technique ids a model writes are validated against it: whatever is not in it is dropped.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

TECHNIQUE_ID = re.compile(r"^T\d{4}(?:\.\d{3})?$")
MAX_TECHNIQUES = 8
"""The most technique ids one finding carries."""


@dataclass(frozen=True)
class Technique:
    """One ATT&CK technique (or sub-technique)."""

    id: str
    name: str
    tactics: tuple[str, ...]
    stix_id: str

    @property
    def url(self) -> str:
        """Returns the technique's page on attack.mitre.org."""
        return f"https://attack.mitre.org/techniques/{self.id.replace('.', '/')}/"


@dataclass(frozen=True)
class Catalogue:
    """Every current technique of one ATT&CK version, by id."""

    version: str
    techniques: dict[str, Technique]

    def get(self, technique_id: str) -> Technique | None:
        """Returns the technique with this id, if current in this version."""
        return self.techniques.get(technique_id)

    def clean(self, values: Iterable[Any], limit: int = MAX_TECHNIQUES) -> list[str]:
        """Returns the valid technique ids among values, upper-cased, deduplicated, in order.

        Anything that is not a string naming a current technique (an id that does not exist,
        a revoked one, free text, an object) is dropped: the values may come from a model
        reading attacker-controlled data.
        """
        kept: list[str] = []
        for value in values:
            if not isinstance(value, str) or len(value) > 16:
                continue
            candidate = value.strip().upper()
            known = TECHNIQUE_ID.match(candidate) and candidate in self.techniques
            if known and candidate not in kept:
                kept.append(candidate)
            if len(kept) >= limit:
                break
        return kept


@functools.cache
def catalogue() -> Catalogue:
    """Returns the shipped technique list (read once)."""
    text = resources.files(__package__).joinpath("attack_techniques.json").read_text()
    document = json.loads(text)
    techniques = {
        row[0]: Technique(id=row[0], name=row[1], tactics=tuple(row[2]), stix_id=row[3])
        for row in document["techniques"]
    }
    return Catalogue(version=str(document["attack_version"]), techniques=techniques)


def clean_technique_ids(values: Iterable[Any], limit: int = MAX_TECHNIQUES) -> list[str]:
    """Returns the valid, current technique ids among values (see `Catalogue.clean`)."""
    return catalogue().clean(values, limit)
