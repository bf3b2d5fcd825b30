"""Which registration replaces which bucket, and what a merge does, without a database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from rbr_registrar.domain import (
    BucketRow,
    Registration,
    S3Config,
    Verdict,
    decide_approval,
    new_bucket,
)
from rbr_registrar.lineage import (
    CROWDED_HOST,
    identity_since,
    is_silent,
    plan_merge,
    replaced_bucket,
)
from rbr_runtime.secrets import TokenVault
from rbr_schemas import BucketState

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
SILENCE = timedelta(minutes=15)
vault = TokenVault.from_setting("unit-test-secret")


def bucket(name: str, token: str = "t" * 32, at: datetime = NOW, **changes: Any) -> BucketRow:
    registration = Registration(
        name=name,
        ip_address="198.51.100.7",
        port=None,
        operating_system="linux (x86_64)",
        metrics={},
        s3=None,
        token_hash=vault.fingerprint(token),
        token_ciphertext=vault.encrypt(token),
    )
    return replace(new_bucket(registration, f"id-{name}", at), **changes)


def test_a_bucket_never_polled_is_silent() -> None:
    assert is_silent(bucket("rustbucket-old"), NOW, SILENCE)


def test_a_bucket_polled_recently_is_alive_and_one_polled_long_ago_is_silent() -> None:
    assert not is_silent(bucket("a", last_seen=NOW - timedelta(minutes=5)), NOW, SILENCE)
    assert is_silent(bucket("a", last_seen=NOW - timedelta(hours=1)), NOW, SILENCE)


def test_a_restart_replaces_the_silent_bucket_of_its_host() -> None:
    old = bucket("rustbucket-old", state=BucketState.ACTIVE)
    new = bucket("rustbucket-new", at=NOW + timedelta(minutes=1))
    assert replaced_bucket(new, [old], NOW, SILENCE) == old.id


def test_a_live_bucket_is_not_replaced() -> None:
    old = bucket("rustbucket-old", last_seen=NOW - timedelta(minutes=1))
    assert replaced_bucket(bucket("rustbucket-new"), [old], NOW, SILENCE) is None


def test_another_host_or_operating_system_is_not_a_restart() -> None:
    new = bucket("rustbucket-new")
    elsewhere = bucket("rustbucket-a", ip_address="198.51.100.8")
    windows = bucket("rustbucket-b", operating_system="windows (x86_64)")
    assert replaced_bucket(new, [elsewhere, windows], NOW, SILENCE) is None


def test_every_restart_replaces_the_first_bucket_not_the_previous_restart() -> None:
    first = bucket("rustbucket-first", state=BucketState.ACTIVE)
    host = [first]
    for number in range(10):
        restart = bucket(f"rustbucket-restart{number}")
        replaced = replaced_bucket(restart, host, NOW, SILENCE)
        assert replaced == first.id
        host.append(replace(restart, replaces_id=replaced))


def test_two_buckets_on_one_host_make_a_restart_ambiguous() -> None:
    # rustbucket's multi-instance guide: four honeypots on one host, approved as their own.
    ssh = bucket("rustbucket-ssh", state=BucketState.ACTIVE)
    http = bucket("rustbucket-http", state=BucketState.ACTIVE)
    assert replaced_bucket(bucket("rustbucket-new"), [ssh, http], NOW, SILENCE) is None


def test_a_replacement_whose_bucket_is_gone_is_a_lineage_of_its_own() -> None:
    orphan = bucket("rustbucket-orphan", replaces_id="id-removed")
    assert replaced_bucket(bucket("rustbucket-new"), [orphan], NOW, SILENCE) == orphan.id


def test_a_crowded_host_gets_no_replacement() -> None:
    host = [bucket("rustbucket-first")] + [
        bucket(f"rustbucket-r{n}", replaces_id="id-rustbucket-first") for n in range(CROWDED_HOST)
    ]
    assert replaced_bucket(bucket("rustbucket-new"), host, NOW, SILENCE) is None


def test_approving_a_replacement_makes_it_a_bucket_of_its_own() -> None:
    marked = bucket("rustbucket-new", replaces_id="id-rustbucket-old")
    decision = decide_approval(marked, NOW)
    assert decision.row is not None
    assert decision.row.replaces_id is None
    assert decision.row.state == BucketState.ACTIVE


def test_a_merge_takes_the_newer_registration_s_token_address_and_metrics() -> None:
    old = bucket(
        "rustbucket-old",
        token="o" * 32,
        state=BucketState.ACTIVE,
        cpu_usage="5%",
        memory_usage="1G",
        last_seen=NOW - timedelta(days=1),
    )
    new = bucket(
        "rustbucket-new",
        token="n" * 32,
        at=NOW + timedelta(hours=1),
        ip_address="198.51.100.9",
        cpu_usage="7%",
        s3_bucket_name="drop",
        s3_region="eu-west-1",
        s3_prefix="x/",
    )
    plan = plan_merge(new, old, new.registered_at, old.registered_at, NOW)
    merged = plan.decision.row
    assert plan.identity_taken
    assert plan.decision.verdict is Verdict.UPDATED
    assert merged is not None
    assert vault.matches("n" * 32, merged.token_hash)
    assert vault.decrypt(merged.token_ciphertext) == "n" * 32
    assert (merged.id, merged.name, merged.state) == (old.id, old.name, BucketState.ACTIVE)
    assert (merged.ip_address, merged.cpu_usage, merged.memory_usage) == (
        "198.51.100.9",
        "7%",
        "1G",
    )
    assert merged.s3 == S3Config("drop", "eu-west-1", "x/")
    assert (merged.registered_at, merged.last_seen) == (old.registered_at, old.last_seen)
    assert merged.version == old.version + 1


def test_an_older_registration_merged_late_gives_only_its_name() -> None:
    old = bucket("rustbucket-old", token="o" * 32)
    newest = NOW + timedelta(hours=5)
    earlier_restart = bucket("rustbucket-r1", token="e" * 32, at=NOW + timedelta(hours=1))
    since = identity_since(old, [newest])
    assert since == newest
    plan = plan_merge(earlier_restart, old, earlier_restart.registered_at, since, NOW)
    assert not plan.identity_taken
    assert plan.decision.verdict is Verdict.UNCHANGED
    assert plan.decision.row == old
