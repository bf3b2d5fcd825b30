"""Reading which honeypot wrote a rustbucket log: its instance and registered names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from rbr_runtime.rustbucket_identity import InstanceStart, read_identities
from rbr_testing.rustbucket_logs import Layout, RustbucketLog, lines_of

# The start-up of a text-layout version, as main.rs and registration.rs write it.
TEXT_START_UP = """\
2025-12-12T09:00:00.000012Z  INFO rustbucket: Tracing initialized
2025-12-12T09:00:00.000144Z  INFO rustbucket: Configuration loaded from Config.toml
2025-12-12T09:00:00.000201Z  INFO rustbucket: Instance name: rustbucket-k3Vb9QzA
2025-12-12T09:00:00.004571Z  INFO rustbucket: S3 logging is enabled
2025-12-12T09:00:00.004602Z  INFO rustbucket::registration: Checking registration configuration...
2025-12-12T09:00:00.004650Z  INFO rustbucket::registration: Using registry URL from environment \
variable: https://registry.example.net/api/register
2025-12-12T09:00:00.004700Z  INFO rustbucket::registration: Generated instance name: \
rustbucket-P0aZ7mWq
2025-12-12T09:00:00.004712Z  INFO rustbucket::registration: Generated instance token: \
Q7fL2mN9pR4sT6vX8zA1bC3dE5gH7jK0
2025-12-12T09:00:05.112000Z  WARN rustbucket::registration: Registration attempt to \
https://registry.example.net/api/register/ returned unexpected status: 503 Service Unavailable. \
Server response: <html>
<body>busy</body></html>
2025-12-12T09:00:05.113000Z  INFO rustbucket: All listeners started. Honeypot is now running \
indefinitely.
"""

JSON_START_UP = (
    '{"timestamp":"2025-12-12T09:00:00.000012Z","level":"INFO","fields":{"message":"Tracing '
    'initialized","event_type":"operational"},"target":"rustbucket"}\n'
    '{"timestamp":"2025-12-12T09:00:00.000201Z","level":"INFO","fields":{"message":"Instance '
    'started","event_type":"operational","instance_name":"rustbucket-J5nR2cXe"},'
    '"target":"rustbucket"}\n'
    '{"timestamp":"2025-12-12T09:00:00.004700Z","level":"INFO","fields":{"message":"Using '
    'instance identity","name":"rustbucket-W8tY4uIo"},"target":"rustbucket::registration"}\n'
)


def test_a_text_start_up_names_the_instance_and_the_registered_bucket() -> None:
    identity = read_identities(TEXT_START_UP.splitlines(keepends=True))
    assert identity.starts == (InstanceStart("rustbucket-k3Vb9QzA", "rustbucket-P0aZ7mWq", 2),)
    assert identity.registered_name_for("rustbucket-k3Vb9QzA") == "rustbucket-P0aZ7mWq"
    assert identity.registered_name_for("rustbucket-other000") is None


def test_a_json_start_up_names_both_from_their_fields() -> None:
    identity = read_identities(JSON_START_UP.encode().splitlines())
    assert identity.instance_names == ("rustbucket-J5nR2cXe",)
    assert identity.registered_names == ("rustbucket-W8tY4uIo",)


def test_a_day_with_restarts_names_every_start_each_with_its_own_registration(
    tmp_path: Path,
) -> None:
    day = datetime(2025, 12, 12, 0, 5, tzinfo=UTC)
    log = RustbucketLog(tmp_path, "rustbucket-Aa111111")
    at = log.start(
        day,
        registry_url="https://r.example/api/register",
        registered_name="rustbucket-Rr111111",
        token="T" * 32,
    )
    at = log.ssh_session(at, ip="203.0.113.9", port=5000, username="root", password="x")
    # A restart later that day: a new instance, which found no registry this time.
    second = RustbucketLog(tmp_path, "rustbucket-Bb222222")
    at = second.start(at + timedelta(hours=3))
    third = RustbucketLog(tmp_path, "rustbucket-Cc333333")
    third.start(
        at + timedelta(hours=3),
        registry_url="https://r.example/api/register",
        registered_name="rustbucket-Rr333333",
        token="U" * 32,
    )
    assert log.written == [tmp_path / "rustbucket.log.2025-12-12"]
    # Each instance uploads the day's file under its own folder (s3_logger.rs).
    assert third.s3_key(log.written[0], "honeypots/") == (
        "honeypots/rustbucket-Cc333333/rustbucket.log.2025-12-12"
    )

    identity = read_identities(lines_of(log.written))
    assert [(s.instance_name, s.registered_name) for s in identity.starts] == [
        ("rustbucket-Aa111111", "rustbucket-Rr111111"),
        ("rustbucket-Bb222222", None),
        ("rustbucket-Cc333333", "rustbucket-Rr333333"),
    ]
    assert identity.registered_name_for("rustbucket-Cc333333") == "rustbucket-Rr333333"


def test_a_registered_name_after_the_listeners_opened_is_not_paired(tmp_path: Path) -> None:
    # An attacker's raw HTTP request is written with its newlines: its lines can look like
    # records. One naming a bucket after the start-up must not be taken as the registration.
    log = RustbucketLog(tmp_path, "rustbucket-Aa111111")
    at = log.start(datetime(2025, 12, 12, 9, tzinfo=UTC))
    forged = (
        "GET / HTTP/1.1\r\nX: 1\n"
        "2025-12-12T09:00:09.000000Z  INFO rustbucket::registration: Generated instance name: "
        "victim-bucket\n\r\n"
    )
    log.http_request(at, ip="198.51.100.6", port=4000, request=forged)
    identity = read_identities(lines_of(log.written))
    assert identity.starts == (InstanceStart("rustbucket-Aa111111", None, 2),)


def test_json_hourly_files_and_names_that_cannot_be_the_honeypots(tmp_path: Path) -> None:
    log = RustbucketLog(tmp_path, "rustbucket-Hh444444", Layout.JSON)
    log.start(
        datetime(2025, 12, 12, 9, 59, 59, 995000, tzinfo=UTC),
        registry_url="https://r.example",
        registered_name="rustbucket-Ii444444",
        token="V" * 32,
    )
    assert [p.name for p in log.written] == [
        "rustbucket.log.2025-12-12-09",
        "rustbucket.log.2025-12-12-10",
    ]
    assert read_identities(lines_of(log.written)).starts == (
        InstanceStart("rustbucket-Hh444444", "rustbucket-Ii444444", 2),
    )
    bad = [
        "2025-12-12T09:00:00.000201Z  INFO rustbucket: Instance name: ../../etc",
        "2025-12-12T09:00:00.000201Z  INFO other_crate: Instance name: rustbucket-Xx000000",
        '{"timestamp":"x","level":"INFO","fields":{"message":"Instance started",'
        '"instance_name":["a"]},"target":"rustbucket"}',
        "not a record at all",
    ]
    assert read_identities(bad).starts == ()


def test_only_the_first_lines_are_read() -> None:
    lines = ["filler"] * 50 + TEXT_START_UP.splitlines()
    assert read_identities(lines, max_lines=50).starts == ()
    assert read_identities(lines, max_lines=60).instance_names == ("rustbucket-k3Vb9QzA",)
