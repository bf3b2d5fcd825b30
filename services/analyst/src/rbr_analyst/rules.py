"""The rule-based analyser: deterministic findings for unmistakable attack patterns.

Used alone when no API key is configured (analyser `rules`), and always beside Claude: rule
findings are kept whatever the model answers and set a severity floor it cannot lower.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rbr_analyst.analysis import AnalysisResult, Finding, Ioc, IocType, highest
from rbr_schemas import Severity

if TYPE_CHECKING:
    from rbr_analyst.window_digest import Digest

BRUTE_FORCE_THRESHOLD = 100
MAX_EVIDENCE = 5
MAX_RULE_CHARS = 16_000
"""The most characters of a command the rules look at (the parser keeps no more)."""


@dataclass(frozen=True)
class CommandRule:
    """A pattern of shell command that is an attack, whatever the context."""

    key: str
    title: str
    severity: Severity
    pattern: re.Pattern[str]
    action: str
    techniques: tuple[str, ...] = ()
    """ATT&CK techniques any command matching the rule evidences."""


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_FETCH = r"(?:wget|curl|tftp|ftpget|busybox\s+(?:wget|tftp))"
_SHELL = r"(?:ba|da|z|k|c|tc)?sh|python[0-9.]*|perl|php|ruby"
# Gaps between the two halves of a pattern are bounded: an unbounded one is scanned to the
# end of the command from every occurrence of the first half, so `wget wget wget ...`
# would cost time quadratic in its length. Real one-liners keep the halves much closer.
_GAP = "{0,512}"

COMMAND_RULES: tuple[CommandRule, ...] = (
    CommandRule(
        "reverse_shell",
        "Reverse shell attempted",
        Severity.CRITICAL,
        _rx(
            rf"/dev/(?:tcp|udp)/|\bnc(?:at)?\b[^|;]{_GAP}\s-[a-z]*[ec]\b"
            rf"|\bbash\s+-i\b[^|;]{_GAP}>&"
            rf"|\bmkfifo\b.{_GAP}\bnc\b|\bsocat\b.{_GAP}\bexec:|\bsocket\.socket\(.{_GAP}connect"
        ),
        "Block the listener address and review outbound connections from the bucket's host.",
        ("T1059.004",),
    ),
    CommandRule(
        "crypto_miner",
        "Cryptocurrency miner deployed",
        Severity.CRITICAL,
        _rx(r"xmrig|minerd|cpuminer|stratum\+(?:tcp|ssl)|cryptonight|nicehash|kdevtmpfsi|kinsing"),
        "Block the mining pool and the download host; look for the same miner on real hosts.",
        ("T1496",),
    ),
    CommandRule(
        "download_and_execute",
        "Payload downloaded and executed",
        Severity.CRITICAL,
        _rx(
            rf"{_FETCH}\b[^|]{_GAP}+\|\s*(?:sudo\s+)?(?:{_SHELL})\b"
            rf"|{_FETCH}\b.{_GAP}(?:;|&&)\s*(?:sh|bash|\./)"
        ),
        "Block the download URLs, submit the payload hashes to threat intel, check real hosts "
        "for the same commands.",
        ("T1105", "T1059.004"),
    ),
    CommandRule(
        "encoded_execution",
        "Base64-encoded command executed",
        Severity.HIGH,
        _rx(
            rf"base64\s+(?:-d|--decode)\b[^|]{_GAP}+\|\s*(?:{_SHELL})\b"
            r"|exec\(\s*(?:base64\.b64decode|__import__\(['\"]base64)"
            rf"|\beval\b.{_GAP}base64"
        ),
        "Decode the payload offline and add its indicators to blocklists.",
        ("T1140", "T1059.004"),
    ),
    CommandRule(
        "made_executable",
        "Downloaded file made executable",
        Severity.HIGH,
        # An octal mode with an odd digit (an execute bit): the lookahead finds one, then the
        # digits are taken once (no splitting them between overlapping quantifiers).
        _rx(r"\bchmod\s+(?:[ugoa]*+\+[rwx]*x|(?=[0-7]*?[1357])[0-7]++)\s+\S"),
        "Recover the file from the bucket's download store and analyse it.",
        ("T1222.002",),
    ),
    CommandRule(
        "persistence",
        "Persistence attempted",
        Severity.HIGH,
        _rx(
            r"\bcrontab\b|/etc/cron|/etc/rc\.local|authorized_keys|/etc/init\.d/"
            r"|systemctl\s+enable|\.bashrc"
        ),
        "Check real hosts for the same cron entries, keys and services.",
        (),
    ),
    CommandRule(
        "anti_forensics",
        "Attempt to erase traces",
        Severity.MEDIUM,
        _rx(r"history\s+-c|unset\s+HISTFILE|rm\s+-rf?\s+/var/log|>\s*/var/log/|shred\s"),
        "Treat the session as hands-on-keyboard; review it in full.",
        (),
    ),
    CommandRule(
        "reconnaissance",
        "System reconnaissance",
        Severity.LOW,
        _rx(
            r"\buname\s+-a\b|/proc/cpuinfo|\bnproc\b|\blscpu\b|\bfree\s+-m\b|\bwhoami\b"
            r"|cat\s+/etc/passwd"
        ),
        "No action needed beyond watching for follow-up activity.",
        ("T1082",),
    ),
)


# Techniques told by a part of a command, whichever rule flagged it: a miner fetched with wget
# is ingress tool transfer as well as resource hijacking; persistence and trace-erasing
# commands name their sub-technique by what they touch.
TECHNIQUE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("T1105", _rx(rf"\b{_FETCH}\b")),
    ("T1496", COMMAND_RULES[1].pattern),
    ("T1222.002", COMMAND_RULES[4].pattern),
    ("T1053.003", _rx(r"\bcrontab\b|/etc/cron")),
    ("T1098.004", _rx(r"authorized_keys")),
    ("T1037.004", _rx(r"/etc/rc\.local|/etc/init\.d/")),
    ("T1543.002", _rx(r"systemctl\s+enable")),
    ("T1546.004", _rx(r"\.bashrc")),
    ("T1070.003", _rx(r"history\s+-c|unset\s+HISTFILE")),
    ("T1070.002", _rx(r"rm\s+-rf?\s+/var/log|>\s*/var/log/")),
    ("T1070.004", _rx(r"shred\s")),
    ("T1087.001", _rx(r"cat\s+/etc/passwd")),
    ("T1033", _rx(r"\bwhoami\b")),
)
LOGIN_TECHNIQUES = ("T1078",)
DOWNLOAD_TECHNIQUES = ("T1105",)
BRUTE_FORCE_TECHNIQUES = ("T1110",)


def command_techniques(command: str, rule: CommandRule | None = None) -> list[str]:
    """Returns the ATT&CK techniques a command evidences.

    Those of its rule, of every other rule it matches, and those its parts tell (see
    `TECHNIQUE_PATTERNS`).
    """
    command = command[:MAX_RULE_CHARS]
    found = list(rule.techniques) if rule is not None else []
    for other in COMMAND_RULES:
        if other is not rule and other.techniques and other.pattern.search(command):
            found += [t for t in other.techniques if t not in found]
    for technique, pattern in TECHNIQUE_PATTERNS:
        if technique not in found and pattern.search(command):
            found.append(technique)
    return found


def match_command(command: str) -> CommandRule | None:
    """Returns the most severe rule the command matches, if any."""
    command = command[:MAX_RULE_CHARS]
    for rule in COMMAND_RULES:  # ordered most severe first
        if rule.pattern.search(command):
            return rule
    return None


def analyse_with_rules(digest: Digest) -> AnalysisResult:
    """Returns the deterministic analysis of a digest."""
    findings: list[Finding] = []
    actions: list[str] = []
    for finding, action in (
        _successful_logins(digest),
        _downloads(digest),
        *_command_findings(digest),
        _brute_force(digest),
    ):
        if finding is not None:
            findings.append(finding)
            if action:
                actions.append(action)
    severity = highest([f.severity for f in findings])
    return AnalysisResult(
        summary=_summary(digest, findings),
        severity=severity,
        findings=findings,
        iocs=_iocs(digest),
        recommended_actions=list(dict.fromkeys(actions)),
    )


FindingAndAction = tuple[Finding | None, str]


def _successful_logins(digest: Digest) -> FindingAndAction:
    if digest.login_successes == 0:
        return None, ""
    evidence = [
        f"{item['source_ip']} logged in as {item['username']!r} ({item['count']}x)"
        for item in digest.successful_logins.items[:MAX_EVIDENCE]
    ]
    finding = Finding(
        key="successful_login",
        title=f"{digest.login_successes} successful login(s) to the honeypot",
        severity=Severity.HIGH,
        description="Attackers got a shell with guessed credentials; what follows in the "
        "session shows their intent.",
        evidence=evidence,
        techniques=list(LOGIN_TECHNIQUES),
    )
    return finding, "Make sure the credentials that worked are not used on any real host."


def _downloads(digest: Digest) -> FindingAndAction:
    if digest.download_count == 0:
        return None, ""
    evidence = [
        f"{item.get('url') or '(no url)'} sha256={item.get('sha256') or '?'}"
        for item in digest.downloads.items[:MAX_EVIDENCE]
    ]
    finding = Finding(
        key="file_download",
        title=f"{digest.download_count} file download(s) by attackers",
        severity=Severity.HIGH,
        description="Attackers fetched files onto the honeypot: likely malware payloads.",
        evidence=evidence,
        techniques=list(DOWNLOAD_TECHNIQUES),
    )
    return finding, "Block the download hosts and submit the file hashes to threat intel."


def _command_findings(digest: Digest) -> list[FindingAndAction]:
    by_rule: dict[str, list[Any]] = {}
    for flagged in digest.flagged_commands:
        by_rule.setdefault(flagged.rule.key, []).append(flagged)
    results: list[FindingAndAction] = []
    for rule in COMMAND_RULES:
        hits = by_rule.get(rule.key)
        if not hits:
            continue
        runs = sum(hit.count for hit in hits)
        techniques: list[str] = []
        for hit in hits:
            techniques += [t for t in hit.techniques if t not in techniques]
        finding = Finding(
            key=rule.key,
            title=rule.title,
            severity=rule.severity,
            description=f"{len(hits)} distinct command(s), run {runs} time(s), match this pattern.",
            evidence=[hit.command for hit in hits[:MAX_EVIDENCE]],
            techniques=techniques,
        )
        results.append((finding, rule.action))
    return results


def _brute_force(digest: Digest) -> FindingAndAction:
    if digest.login_failures < BRUTE_FORCE_THRESHOLD:
        return None, ""
    evidence = [
        f"{item['value']} ({item['count']} records)" for item in digest.source_ips.items[:3]
    ]
    finding = Finding(
        key="brute_force",
        title=f"Password guessing: {digest.login_failures} failed logins",
        severity=Severity.LOW,
        description=f"{digest.usernames.distinct} usernames and {digest.passwords.distinct} "
        "passwords tried.",
        evidence=evidence,
        techniques=list(BRUTE_FORCE_TECHNIQUES),
    )
    return finding, ""


def _summary(digest: Digest, findings: list[Finding]) -> str:
    head = (
        f"Rule-based analysis of {digest.total_rows} records from "
        f"{digest.distinct_source_ips} source IPs ({digest.new_source_ips.distinct} new) "
        f"in {digest.window.label()}."
    )
    if not findings:
        return f"{head} No attack pattern matched."
    titles = "; ".join(f"{f.title} [{f.severity.value}]" for f in findings)
    return f"{head} Findings: {titles}."


def _iocs(digest: Digest) -> list[Ioc]:
    iocs: list[Ioc] = []
    for item in digest.successful_logins.items[:10]:
        if item["source_ip"]:
            iocs.append(Ioc(type=IocType.IP, value=item["source_ip"]))
    for item in digest.downloads.items[:10]:
        if item.get("url"):
            iocs.append(Ioc(type=IocType.URL, value=item["url"]))
        if item.get("sha256"):
            iocs.append(Ioc(type=IocType.SHA256, value=item["sha256"]))
    for flagged in digest.flagged_commands[:10]:
        if flagged.rule.severity >= Severity.HIGH:
            iocs.append(Ioc(type=IocType.COMMAND, value=flagged.command))
    return list({(i.type, i.value): i for i in iocs}.values())
