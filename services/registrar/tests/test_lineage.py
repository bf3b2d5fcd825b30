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
    last_sign_of_life,
    plan_merge,
    replaced_bucket,
)
from rbr_runtime.secrets import TokenVault
from rbr_schemas import BucketState, DeliveryMode

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


# -- S3 drop buckets: uploads are their sign of life; merges carry the delivery mode ----------


def test_an_s3_drop_bucket_is_alive_while_it_uploads_and_a_pull_bucket_only_by_its_polls() -> None:
    drop = bucket("rustbucket-drop", delivery_mode=DeliveryMode.S3_DROP.value)
    recent, long_ago = NOW - timedelta(minutes=5), NOW - timedelta(hours=2)
    assert last_sign_of_life(drop, recent) == recent
    assert not is_silent(drop, NOW, SILENCE, recent)
    assert is_silent(drop, NOW, SILENCE, long_ago)
    polled = replace(drop, last_seen=recent)
    assert last_sign_of_life(polled, long_ago) == recent  # whichever is later
    # A pull bucket is judged by its polls: an upload does not keep it alive.
    assert is_silent(bucket("rustbucket-pull"), NOW, SILENCE, recent)


def test_a_restart_does_not_replace_an_s3_drop_bucket_that_is_still_uploading() -> None:
    old = bucket("rustbucket-old", delivery_mode=DeliveryMode.S3_DROP.value)
    new = bucket("rustbucket-new")
    uploading = {old.id: NOW - timedelta(minutes=5)}
    assert replaced_bucket(new, [old], NOW, SILENCE, uploading) is None
    quiet = {old.id: NOW - timedelta(hours=2)}
    assert replaced_bucket(new, [old], NOW, SILENCE, quiet) == old.id
    assert replaced_bucket(new, [old], NOW, SILENCE) == old.id  # never uploaded


def test_a_merge_carries_the_registration_s_drop_folders_mode_unless_the_bucket_is_polled() -> None:
    # The restart's folder was linked to the registration (made s3-drop); merged into a
    # bucket that never answered a poll, the bucket becomes s3-drop, even from an older
    # registration that gives only its name (its folders still move).
    linked = bucket(
        "rustbucket-new", at=NOW + timedelta(hours=1), delivery_mode=DeliveryMode.S3_DROP.value
    )
    old = bucket("rustbucket-old")
    for since in (linked.registered_at, old.registered_at - timedelta(hours=1)):
        plan = plan_merge(linked, old, since, old.registered_at, NOW)
        assert plan.decision.row is not None
        assert plan.decision.row.delivery_mode == DeliveryMode.S3_DROP.value
    polled = bucket("rustbucket-polled", last_seen=NOW - timedelta(hours=3))
    plan = plan_merge(linked, polled, linked.registered_at, polled.registered_at, NOW)
    assert plan.decision.row is not None
    assert plan.decision.row.delivery_mode == DeliveryMode.PULL.value
    pinned = bucket("rustbucket-pinned", delivery_mode_pinned=True)
    plan = plan_merge(linked, pinned, linked.registered_at, pinned.registered_at, NOW)
    assert plan.decision.row is not None
    assert plan.decision.row.delivery_mode == DeliveryMode.PULL.value
    # A plain restart registration (pull) merged into an s3-drop bucket keeps it s3-drop.
    drop = bucket("rustbucket-drop", delivery_mode=DeliveryMode.S3_DROP.value)
    restart = bucket("rustbucket-restart", at=NOW + timedelta(hours=1))
    plan = plan_merge(restart, drop, restart.registered_at, drop.registered_at, NOW)
    assert plan.decision.row is not None
    assert plan.decision.row.delivery_mode == DeliveryMode.S3_DROP.value


def test_a_merged_agent_registration_makes_the_bucket_agent_with_its_pin() -> None:
    agent = bucket(
        "rustbucket-agent",
        at=NOW + timedelta(hours=1),
        delivery_mode=DeliveryMode.AGENT.value,
        tls_cert_sha256="ab" * 32,
    )
    old = bucket("rustbucket-old", last_seen=NOW - timedelta(days=1))
    plan = plan_merge(agent, old, agent.registered_at, old.registered_at, NOW)
    assert plan.decision.row is not None
    assert (plan.decision.row.delivery_mode, plan.decision.row.tls_cert_sha256) == (
        "agent",
        "ab" * 32,
    )
