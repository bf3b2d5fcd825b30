"""The generated logs look like the real programs' logs and carry correct ground truth."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest
from rbr_simulator.generator import LogGenerator
from rbr_simulator.logstore import BulkLog
from rbr_simulator.records import EventType, HostileKind, LogFormat, LogMix, LogRecord

START = datetime(2025, 10, 28, 19, 5, 0, tzinfo=UTC)
RUSTBUCKET_LINE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (?P<level> INFO| WARN|ERROR|DEBUG) "
    r"(?P<target>rustbucket(?:::[a-z_]+)*): (?P<message>.*)$"
)
TIMESTAMP_START = re.compile(r"^\d{4}-\d\d-\d\dT")
SSHD_LINE = re.compile(
    r"^(?P<month>[A-Z][a-z]{2}) (?P<day>[ \d]\d) (?P<time>\d\d:\d\d:\d\d) (?P<host>\S+) "
    r"sshd\[(?P<pid>\d+)\]: (?P<message>.*)$"
)
SSHD_MESSAGES = (
    re.compile(r"^Failed password for (invalid user )?.+ from \S+ port \d+ ssh2$"),
    re.compile(r"^Invalid user .+ from \S+ port \d+$"),
    re.compile(r"^Accepted password for .+ from \S+ port \d+ ssh2$"),
    re.compile(r"^Connection closed by (?:(?:invalid|authenticating) user .+ )?\S+ port \d+"),
    re.compile(r"^Disconnected from (?:(?:invalid|authenticating) )?user .+ \S+ port \d+"),
    re.compile(r"^Received disconnect from \S+ port \d+:11: Bye Bye \[preauth\]$"),
)
HTTP_LINE = re.compile(
    r"^(?P<ip>\d+\.\d+\.\d+\.\d+) - - \[(?P<time>\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000)\] "
    r'"(?P<method>[A-Z]+) (?P<target>[^ ]*(?: [^ ]*)*?) HTTP/1\.1" (?P<status>\d{3}) '
    r'(?P<size>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)"$'
)
COWRIE_FIELDS = {
    "cowrie.session.connect": {"src_port", "dst_ip", "dst_port", "protocol"},
    "cowrie.client.version": {"version"},
    "cowrie.login.failed": {"username", "password"},
    "cowrie.login.success": {"username", "password"},
    "cowrie.command.input": {"input"},
    "cowrie.command.failed": {"input"},
    "cowrie.session.file_download": {"url", "shasum", "outfile"},
    "cowrie.session.closed": {"duration"},
}
COMMON_COWRIE_FIELDS = {"eventid", "src_ip", "session", "timestamp", "sensor", "message"}


def generate(log_format: LogFormat, count: int = 2000, hostile: float = 0.0) -> list[LogRecord]:
    mix = LogMix.only(log_format, hostile_fraction=hostile)
    return LogGenerator(seed=11, mix=mix, start=START, sensor="rustbucket-aB3dE5fG").generate(count)


def test_same_seed_gives_same_records_and_other_seeds_differ() -> None:
    first = LogGenerator(seed=5, start=START).generate(300)
    again = LogGenerator(seed=5, start=START).generate(300)
    other = LogGenerator(seed=6, start=START).generate(300)

    assert [record.data for record in first] == [record.data for record in again]
    assert first == again
    assert [record.data for record in first] != [record.data for record in other]


def test_default_mix_produces_every_format_in_time_order() -> None:
    records = LogGenerator(seed=3, start=START).generate(3000)

    formats = Counter(record.format for record in records)
    assert set(formats) == set(LogFormat)
    timestamps = [record.timestamp for record in records]
    assert timestamps == sorted(timestamps)
    assert timestamps[0] > START
    assert all(record.data.endswith(b"\n") for record in records)


def test_wall_clock_timestamps_follow_the_clock_and_never_go_back() -> None:
    frozen = datetime(2030, 1, 1, tzinfo=UTC)
    records = LogGenerator(seed=1, clock=lambda: frozen).generate(50)

    assert records[0].timestamp == frozen
    assert all(b.timestamp > a.timestamp for a, b in itertools.pairwise(records))


def test_rustbucket_records_look_like_tracing_output() -> None:
    records = generate(LogFormat.RUSTBUCKET, 3000)

    levels: Counter[str] = Counter()
    targets: set[str] = set()
    multiline = 0
    for record in records:
        first, *continuation = record.text.split("\n")[:-1]
        match = RUSTBUCKET_LINE.match(first)
        assert match, first
        assert record.level == match["level"].strip()
        assert record.target == match["target"]
        assert record.message is not None
        assert record.message.startswith(match["message"])
        assert all(not TIMESTAMP_START.match(line) for line in continuation), record.text
        levels[match["level"].strip()] += 1
        targets.add(match["target"])
        multiline += bool(continuation)
    assert set(levels) == {"INFO", "WARN", "ERROR", "DEBUG"}
    assert "Z  INFO rustbucket" in records[0].text or any(
        "Z  INFO rustbucket" in record.text for record in records
    )
    assert {"rustbucket::handler", "rustbucket::protocols::ssh"} <= targets
    assert {"rustbucket::protocols::http"} <= targets
    assert multiline > 30


def test_rustbucket_received_data_includes_raw_http_requests_and_scripts() -> None:
    records = generate(LogFormat.RUSTBUCKET, 3000)
    texts = [record.text for record in records if record.event_type is EventType.DATA_RECEIVED]

    assert any("\r\nHost: " in text and "User-Agent: " in text for text in texts)
    assert any("#!/bin/sh" in record.text for record in records)
    assert any("\ufffd" in text for text in texts)  # Binary probes rendered lossily.
    commands = [r.command for r in records if r.event_type is EventType.COMMAND]
    assert any(command and "wget" in command for command in commands)


def test_cowrie_lines_are_json_with_the_real_fields_and_coherent_sessions() -> None:
    records = generate(LogFormat.COWRIE, 3000)

    sessions: dict[str, list[dict[str, object]]] = defaultdict(list)
    for record in records:
        assert record.line_count == 1
        event = json.loads(record.data)
        eventid = str(event["eventid"])
        assert set(event) >= COMMON_COWRIE_FIELDS, event
        assert set(event) >= COWRIE_FIELDS[eventid], event
        assert re.fullmatch(r"[0-9a-f]{12}", str(event["session"]))
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", str(event["timestamp"]))
        assert record.session == event["session"]
        assert record.src_ip == event["src_ip"]
        sessions[str(event["session"])].append(event)
    eventids = Counter(str(event["eventid"]) for events in sessions.values() for event in events)
    assert set(eventids) == set(COWRIE_FIELDS)
    for events in list(sessions.values())[:-1]:  # The last session may be cut off.
        ids = [event["eventid"] for event in events]
        assert ids[0] == "cowrie.session.connect"
        assert ids[-1] == "cowrie.session.closed"
        commands_at = [i for i, e in enumerate(ids) if e == "cowrie.command.input"]
        if commands_at:
            assert "cowrie.login.success" in ids[: commands_at[0]]
        assert len({event["src_ip"] for event in events}) == 1


def test_cowrie_downloads_carry_url_and_sha256() -> None:
    records = generate(LogFormat.COWRIE, 3000)
    downloads = [record for record in records if record.event_type is EventType.DOWNLOAD]

    assert downloads
    for record in downloads:
        event = json.loads(record.data)
        assert record.sha256 is not None
        assert re.fullmatch(r"[0-9a-f]{64}", record.sha256)
        assert event["shasum"] == record.sha256
        assert event["url"] == record.url
        assert str(event["outfile"]).endswith(record.sha256)
        assert str(record.url).startswith("http://")


def test_sshd_lines_look_like_openssh_auth_log() -> None:
    records = generate(LogFormat.SSHD, 2000)

    seen_types = set()
    for record in records:
        match = SSHD_LINE.match(record.text.rstrip("\n"))
        assert match, record.text
        assert match["host"] == "rustbucket-aB3dE5fG"
        assert any(pattern.match(match["message"]) for pattern in SSHD_MESSAGES), match["message"]
        assert record.src_ip is not None
        assert f"{record.src_ip} port {record.src_port}" in match["message"]
        if record.username is not None:
            assert record.username in match["message"]
        seen_types.add(record.event_type)
    assert {
        EventType.LOGIN_FAILED,
        EventType.INVALID_USER,
        EventType.LOGIN_SUCCESS,
        EventType.DISCONNECT,
    } <= seen_types
    assert any("Failed password for root from" in record.text for record in records)
    assert any("Failed password for invalid user" in record.text for record in records)
    # Day of month is space padded: "Oct  3", like syslog.
    early = LogGenerator(seed=1, mix=LogMix.only("sshd"), start=datetime(2025, 3, 3, tzinfo=UTC))
    assert early.next_record().text.startswith("Mar  3 ")


def test_http_lines_are_combined_log_format_with_scanner_traffic() -> None:
    records = generate(LogFormat.HTTP, 2000)

    targets = set()
    for record in records:
        match = HTTP_LINE.match(record.text.rstrip("\n"))
        assert match, record.text
        assert match["ip"] == record.src_ip
        assert match["method"] == record.http_method
        assert match["target"] == record.url
        assert int(match["status"]) == record.http_status
        assert match["agent"] == record.user_agent
        targets.add(match["target"])
    assert {"/.env", "/wp-login.php"} <= targets
    assert any(target.startswith("/${jndi:ldap://") for target in targets)
    assert any(target.startswith("/cgi-bin/") for target in targets)
    assert any("UNION" in target or "%27" in target for target in targets)
    assert any("../" in target for target in targets)


def test_ground_truth_fields_appear_in_the_record_text() -> None:
    records = LogGenerator(seed=21, start=START, mix=LogMix(hostile_fraction=0.2)).generate(4000)

    for record in records:
        text = record.text
        if record.format is LogFormat.COWRIE:
            text = json.dumps(json.loads(record.data), ensure_ascii=False)
            values = json.loads(record.data).values()
            for field in (record.username, record.password, record.command):
                assert field is None or field in values
            continue
        for field in (record.src_ip, record.username, record.password, record.command):
            assert field is None or field in text, (field, text)
        assert record.url is None or record.url in text


def test_hostile_content_is_planted_at_the_configured_fraction() -> None:
    records = LogGenerator(seed=9, start=START, mix=LogMix(hostile_fraction=0.3)).generate(6000)

    kinds = Counter(record.hostile for record in records if record.hostile is not None)
    assert set(kinds) == set(HostileKind)
    data = [record.data for record in records]
    assert any(b"\x1b[" in item for item in data)
    assert any(b"\x00" in item for item in data)
    assert any(_not_utf8(item) for item in data)
    assert any(len(line) > 60_000 for item in data for line in item.split(b"\n"))
    assert any(b"Ignore previous instructions" in item for item in data)
    assert any(b'"severity": "none"' in item or b'\\"severity\\"' in item for item in data)
    assert any(b"\nSYSTEM:" in item for item in data)  # A fake SYSTEM line of its own.
    carrying = [r for r in records if r.username or r.password or r.command or r.url]
    share = sum(1 for record in carrying if record.hostile) / len(carrying)
    assert 0.15 < share < 0.45


def test_no_hostile_content_at_fraction_zero() -> None:
    records = LogGenerator(seed=9, start=START).generate(3000)

    assert all(record.hostile is None for record in records)
    assert not any(_not_utf8(record.data) for record in records)
    assert not any(b"Ignore previous instructions" in record.data for record in records)
    assert max(len(line) for r in records for line in r.data.split(b"\n")) < 2000


@pytest.mark.parametrize("log_format", list(LogFormat))
def test_single_format_mix_produces_only_that_format(log_format: LogFormat) -> None:
    records = generate(log_format, 300)

    assert {record.format for record in records} == {log_format}


def test_bulk_log_streams_the_same_bytes_each_time_in_whole_records() -> None:
    bulk = BulkLog(
        seq=1,
        size_bytes=1_000_000,
        seed=4,
        mix=LogMix(),
        sensor="rustbucket-bulk0001",
        honeypot_ip="127.0.0.2",
        start=START,
    )

    first = list(bulk.chunks(64 * 1024))
    again = b"".join(bulk.chunks(256 * 1024))

    assert b"".join(first) == again
    assert all(chunk.endswith(b"\n") for chunk in first)
    assert 1_000_000 <= len(again) < 1_000_000 + 100_000


def test_log_mix_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="hostile_fraction"):
        LogMix(hostile_fraction=1.5)
    with pytest.raises(ValueError, match="weights"):
        LogMix(rustbucket=0, cowrie=0, sshd=0, http=0)


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False
