"""The registrar's decisions, without a database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from rbr_registrar.domain import (
    Registration,
    S3Config,
    SelfUpdate,
    Verdict,
    decide_approval,
    decide_disable,
    decide_registration,
    decide_rekey,
    decide_self_update,
    event_id,
    new_bucket,
    registration_message,
)
from rbr_runtime.kafka.codec import decode
from rbr_runtime.secrets import TokenVault
from rbr_schemas import BUCKET_REGISTERED, BucketState, DeliveryMode

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
TOKEN = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
vault = TokenVault.from_setting("unit-test-secret")


def registration(**changes: object) -> Registration:
    base = Registration(
        name="rustbucket-a1B2c3D4",
        ip_address="203.0.113.7",
        port=None,
        operating_system="linux (x86_64)",
        metrics={},
        s3=None,
        token_hash=vault.fingerprint(TOKEN),
        token_ciphertext=vault.encrypt(TOKEN),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_new_bucket_without_enrollment_key_waits_as_pending() -> None:
    decision = decide_registration(None, registration(), "id-1", NOW)
    assert decision.verdict is Verdict.CREATED
    assert decision.row is not None
    assert decision.row.state == BucketState.PENDING
    assert decision.row.approved_at is None
    assert decision.row.version == 1


def test_new_bucket_with_enrollment_key_is_active_at_once() -> None:
    decision = decide_registration(None, registration(enrolled=True), "id-1", NOW)
    assert decision.row is not None
    assert decision.row.state == BucketState.ACTIVE
    assert decision.row.approved_at == NOW


def test_same_name_same_token_and_nothing_new_is_a_no_op() -> None:
    existing = new_bucket(registration(), "id-1", NOW)
    # A new ciphertext of the same token is not a change: the stored one is kept.
    again = registration(token_ciphertext=vault.encrypt(TOKEN))
    decision = decide_registration(existing, again, "id-2", LATER)
    assert decision.verdict is Verdict.UNCHANGED
    assert decision.row == existing
    assert not decision.writes


def test_same_token_with_a_new_address_updates_and_bumps_the_version() -> None:
    existing = new_bucket(registration(enrolled=True), "id-1", NOW)
    decision = decide_registration(
        existing, registration(ip_address="198.51.100.9", port=8443), "id-2", LATER
    )
    assert decision.verdict is Verdict.UPDATED
    assert decision.row is not None
    assert (decision.row.ip_address, decision.row.port) == ("198.51.100.9", 8443)
    assert decision.row.version == 2
    assert decision.row.updated_at == LATER
    assert decision.row.id == "id-1"
    assert decision.row.token_ciphertext == existing.token_ciphertext


def test_different_token_is_a_conflict_that_changes_nothing() -> None:
    existing = new_bucket(registration(), "id-1", NOW)
    hijack = registration(token_hash=vault.fingerprint("x" * 32), ip_address="198.51.100.66")
    decision = decide_registration(existing, hijack, "id-2", LATER)
    assert decision.verdict is Verdict.CONFLICT
    assert decision.row is None


def test_disabled_bucket_stays_disabled_when_it_registers_again() -> None:
    existing = replace(new_bucket(registration(), "id-1", NOW), state=BucketState.DISABLED)
    decision = decide_registration(existing, registration(ip_address="198.51.100.9"), "x", LATER)
    assert decision.verdict is Verdict.DISABLED
    assert not decision.writes


def test_absent_metrics_and_s3_keep_their_stored_values() -> None:
    s3 = S3Config("honeypot-logs", "eu-west-1", "rb/")
    existing = new_bucket(registration(metrics={"cpu_usage": "12%"}, s3=s3), "id-1", NOW)
    decision = decide_registration(existing, registration(metrics={"uptime": "3600"}), "x", LATER)
    assert decision.row is not None
    assert decision.row.cpu_usage == "12%"
    assert decision.row.uptime == "3600"
    assert decision.row.s3 == s3


def test_self_update_changes_s3_and_metrics_and_can_remove_s3() -> None:
    existing = new_bucket(registration(), "id-1", NOW)
    s3 = S3Config("honeypot-logs", "us-east-1", "logs/")
    first = decide_self_update(existing, SelfUpdate(metrics={"disk_space": "40GB"}, s3=s3), LATER)
    assert first.verdict is Verdict.UPDATED
    assert first.row is not None
    assert (first.row.s3, first.row.disk_space, first.row.version) == (s3, "40GB", 2)

    removed = decide_self_update(first.row, SelfUpdate(metrics={}, remove_s3=True), LATER)
    assert removed.row is not None
    assert removed.row.s3 is None
    assert removed.row.version == 3
    unchanged = decide_self_update(removed.row, SelfUpdate(metrics={"disk_space": "40GB"}), LATER)
    assert unchanged.verdict is Verdict.UNCHANGED


def test_approve_and_disable_change_state_once() -> None:
    pending = new_bucket(registration(), "id-1", NOW)
    approved = decide_approval(pending, LATER)
    assert approved.row is not None
    assert (approved.row.state, approved.row.approved_at, approved.row.version) == (
        BucketState.ACTIVE,
        LATER,
        2,
    )
    assert decide_approval(approved.row, LATER).verdict is Verdict.UNCHANGED
    disabled = decide_disable(approved.row, LATER)
    assert disabled.row is not None
    assert disabled.row.state == BucketState.DISABLED
    assert decide_disable(disabled.row, LATER).verdict is Verdict.UNCHANGED
    assert decide_approval(disabled.row, LATER).row.state == BucketState.ACTIVE  # type: ignore[union-attr]


def test_registration_message_carries_the_ciphertext_never_the_token() -> None:
    row = new_bucket(
        registration(port=8443, s3=S3Config("honeypot-logs", "us-east-1", "logs/")), "id-1", NOW
    )
    value = registration_message(row)
    assert TOKEN.encode() not in value
    event = decode(BUCKET_REGISTERED, value)
    record = event.data
    assert vault.decrypt(record.token_ciphertext) == TOKEN
    assert (record.name, record.port, record.version, record.state) == (
        row.name,
        8443,
        1,
        BucketState.PENDING,
    )
    assert record.s3.bucket_name == "honeypot-logs"
    assert event.id == event_id(row)
    assert event_id(replace(row, version=2)) != event.id


@pytest.mark.parametrize("field", ["token_hash", "token_ciphertext"])
def test_row_repr_hides_token_material(field: str) -> None:
    row = new_bucket(registration(), "id-1", NOW)
    assert getattr(row, field) not in repr(row)


def test_a_token_stored_under_a_rotated_out_key_is_stored_again_under_the_current_one() -> None:
    old, rotated = TokenVault.from_setting("old-key"), TokenVault.from_setting("new-key,old-key")
    stored = new_bucket(
        registration(token_hash=old.fingerprint(TOKEN), token_ciphertext=old.encrypt(TOKEN)),
        "id-1",
        NOW,
    )
    current, *earlier = rotated.fingerprints(TOKEN)
    again = registration(
        token_hash=current,
        token_ciphertext=rotated.encrypt(TOKEN),
        earlier_token_hashes=tuple(earlier),
    )
    decision = decide_registration(stored, again, "id-2", LATER)
    assert decision.verdict is Verdict.UPDATED
    assert decision.row is not None
    assert decision.row.token_hash == current
    assert TokenVault.from_setting("new-key").decrypt(decision.row.token_ciphertext) == TOKEN
    # Stored under the current key now: the same registration changes nothing more.
    assert decide_registration(decision.row, again, "id-3", LATER).verdict is Verdict.UNCHANGED
    other = rotated.fingerprints("x" * 32)
    hijack = registration(token_hash=other[0], earlier_token_hashes=tuple(other[1:]))
    assert decide_registration(stored, hijack, "id-4", LATER).verdict is Verdict.CONFLICT

    update = SelfUpdate(metrics={}, token_hash=current, token_ciphertext=rotated.encrypt(TOKEN))
    rehashed = decide_self_update(stored, update, LATER)
    assert rehashed.verdict is Verdict.UPDATED
    assert rehashed.row is not None
    assert rehashed.row.token_hash == current
    assert rehashed.row is not None
    assert decide_self_update(rehashed.row, update, LATER).verdict is Verdict.UNCHANGED


def test_rekey_stores_the_token_again_as_a_new_version_keeping_the_rest() -> None:
    existing = new_bucket(registration(), "id-1", NOW)
    rotated = TokenVault.from_setting("next-secret,unit-test-secret")
    restored = rotated.restored(existing.token_ciphertext, existing.token_hash)
    assert restored is not None
    decision = decide_rekey(existing, restored.token_hash, restored.ciphertext, LATER)
    assert decision.verdict is Verdict.UPDATED
    assert decision.row is not None
    assert decision.row.version == 2
    assert decision.row.updated_at == LATER
    assert decision.row.token_ciphertext == restored.ciphertext
    assert decision.row.token_hash == TokenVault.from_setting("next-secret").fingerprint(TOKEN)
    assert replace(decision.row, token_hash="", token_ciphertext="", version=1, updated_at=NOW) == (
        replace(existing, token_hash="", token_ciphertext="")
    )


# -- delivery modes told by the registration (the bucket agent) -------------------------------


def test_a_registration_pinning_its_certificate_or_saying_agent_makes_an_agent_bucket() -> None:
    for told in (
        registration(tls_cert_sha256="ab" * 32),
        registration(delivery_mode=DeliveryMode.AGENT),
    ):
        created = decide_registration(None, told, "id-1", NOW).row
        assert created is not None
        assert created.delivery_mode == DeliveryMode.AGENT.value
    plain = decide_registration(None, registration(), "id-1", NOW).row
    assert plain is not None
    assert plain.delivery_mode == DeliveryMode.PULL.value


def test_a_registration_telling_its_mode_updates_it_but_never_an_operator_s_choice() -> None:
    existing = new_bucket(registration(), "id-1", NOW)
    dropped = replace(existing, delivery_mode=DeliveryMode.S3_DROP.value)
    # Saying nothing keeps what was inferred (a drop folder made it s3-drop).
    assert decide_registration(dropped, registration(), "id-1", LATER).verdict is (
        Verdict.UNCHANGED
    )
    agent = decide_registration(dropped, registration(tls_cert_sha256="ab" * 32), "id-1", LATER)
    assert agent.row is not None
    assert (agent.verdict, agent.row.delivery_mode) == (Verdict.UPDATED, "agent")
    pinned = replace(dropped, delivery_mode_pinned=True)
    kept = decide_registration(
        pinned, registration(delivery_mode=DeliveryMode.AGENT), "id-1", LATER
    )
    assert kept.verdict is Verdict.UNCHANGED
    assert kept.row is not None
    assert kept.row.delivery_mode == DeliveryMode.S3_DROP.value
