"""The indicators an analysis sighted: from the digest (rules) and from the model's answer.

From the digest, deterministically: source IPs (the top N of the window), the IPs and
credentials of successful logins, download URLs and hashes, URLs (and their hosts) inside
flagged commands, and the flagged commands of high severity. From the model: its IOCs that the
digest did not already give, with lower confidence. Every value is normalised
(`rbr_runtime.intel.indicators`): what does not normalise is no indicator and is dropped.
Each sighting carries the ATT&CK techniques of what the indicator did.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rbr_analyst.analysis import AnalysisResult, IocType
from rbr_analyst.rules import (
    BRUTE_FORCE_TECHNIQUES,
    DOWNLOAD_TECHNIQUES,
    LOGIN_TECHNIQUES,
)
from rbr_analyst.window_digest import Digest
from rbr_runtime.intel.indicators import (
    Indicator,
    IndicatorType,
    credential,
    normalise,
    normalise_domain,
    normalise_ip,
)
from rbr_schemas import Severity

# Confidence (0-100) that an indicator is malicious, by what it was seen doing. A source
# address that only knocked is weak evidence (scanners, shared NAT); a payload hash is strong.
CONFIDENCE = {
    "download": 90,
    "command": 80,
    "payload_host": 75,
    "login": 70,
    "brute_force": 40,
    "source": 30,
    "model": 40,
}
_URL_IN_TEXT = re.compile(r"\b(?:https?|ftp|tftp|hxxps?)(?:://|\[://\]|\[:\]//)[^\s'\"|;&<>`)]+")
_MODEL_TYPES = {
    IocType.IP: IndicatorType.IP,
    IocType.URL: IndicatorType.URL,
    IocType.DOMAIN: IndicatorType.DOMAIN,
    IocType.SHA256: IndicatorType.SHA256,
    IocType.USERNAME: IndicatorType.USERNAME,
    IocType.PASSWORD: IndicatorType.PASSWORD,
    IocType.COMMAND: IndicatorType.COMMAND,
}


@dataclass
class Sighting:
    """One indicator as one analysis saw it."""

    indicator: Indicator
    hits: int = 0
    roles: list[str] = field(default_factory=list)
    techniques: list[str] = field(default_factory=list)
    confidence: int = 0
    source: str = "rules"
    source_rule: str = ""

    def add(self, role: str, hits: int, techniques: tuple[str, ...] | list[str] = ()) -> None:
        """Adds what one more piece of evidence says about the indicator."""
        self.hits = max(self.hits, hits)
        if role not in self.roles:
            self.roles.append(role)
        self.techniques += [t for t in techniques if t not in self.techniques]
        if CONFIDENCE.get(role, 0) > self.confidence:
            self.confidence = CONFIDENCE.get(role, 0)
            self.source_rule = self.source_rule or role


class SightingSet:
    """The sightings of one analysis, one per indicator."""

    def __init__(self) -> None:
        self._by_key: dict[str, Sighting] = {}

    def add(
        self,
        indicator: Indicator | None,
        role: str,
        hits: int,
        techniques: tuple[str, ...] | list[str] = (),
        *,
        source: str = "rules",
        source_rule: str = "",
    ) -> None:
        """Records evidence about an indicator (nothing when it did not normalise)."""
        if indicator is None:
            return
        sighting = self._by_key.get(indicator.key)
        if sighting is None:
            sighting = Sighting(indicator, source=source, source_rule=source_rule)
            self._by_key[indicator.key] = sighting
        sighting.add(role, hits, techniques)

    def __contains__(self, key: str) -> bool:
        return key in self._by_key

    def all(self) -> list[Sighting]:
        """Returns the sightings in the order they were first recorded."""
        return list(self._by_key.values())


def sightings_of(digest: Digest, result: AnalysisResult) -> list[Sighting]:
    """Returns every indicator the analysis of the digest sighted."""
    found = SightingSet()
    brute_force = any(f.key == "brute_force" for f in result.findings)
    for item in digest.source_ips.items:
        role, techniques = (
            ("brute_force", BRUTE_FORCE_TECHNIQUES) if brute_force else ("source", ())
        )
        found.add(normalise("ip", item["value"]), role, int(item["count"]), techniques)
    for item in digest.successful_logins.items:
        count = int(item["count"])
        found.add(normalise("ip", item["source_ip"] or ""), "login", count, LOGIN_TECHNIQUES)
        if item.get("username") is not None:
            pair = credential(item["username"], item.get("password") or "")
            found.add(normalise("credential", pair), "login", count, LOGIN_TECHNIQUES)
    for item in digest.downloads.items:
        count = int(item["count"])
        if item.get("sha256"):
            found.add(normalise("sha256", item["sha256"]), "download", count, DOWNLOAD_TECHNIQUES)
        if item.get("url"):
            _add_url(found, item["url"], "download", count, DOWNLOAD_TECHNIQUES)
    for flagged in digest.flagged_commands:
        for url in _URL_IN_TEXT.findall(flagged.command):
            _add_url(
                found,
                url,
                "command",
                flagged.count,
                flagged.techniques,
                source_rule=flagged.rule.key,
            )
        if flagged.rule.severity >= Severity.HIGH:
            found.add(
                normalise("command", flagged.command),
                "command",
                flagged.count,
                flagged.techniques,
                source_rule=flagged.rule.key,
            )
    _add_model_iocs(found, result)
    return found.all()


def _add_url(
    found: SightingSet,
    text: str,
    role: str,
    hits: int,
    techniques: tuple[str, ...] | list[str],
    *,
    source_rule: str = "",
) -> None:
    url = normalise("url", text)
    if url is None or url.url is None:
        return
    found.add(url, role, hits, techniques, source_rule=source_rule or role)
    host = url.url.host
    ip = normalise_ip(host)
    host_indicator = Indicator(IndicatorType.IP, ip) if ip else _domain(normalise_domain(host))
    found.add(host_indicator, "payload_host", hits, techniques, source_rule=source_rule or role)


def _domain(value: str | None) -> Indicator | None:
    return Indicator(IndicatorType.DOMAIN, value) if value else None


def _add_model_iocs(found: SightingSet, result: AnalysisResult) -> None:
    for ioc in result.iocs:
        kind = _MODEL_TYPES.get(ioc.type)
        if kind is None:
            continue
        indicator = normalise(kind, ioc.value)
        if indicator is None or indicator.key in found:
            continue
        found.add(indicator, "model", 0, (), source="claude", source_rule="model")
