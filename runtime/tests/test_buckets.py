"""Which bucket addresses the registry may call, and how it builds a bucket's URL."""

from __future__ import annotations

import ipaddress
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import trustme

from rbr_runtime.buckets import (
    CA_BUNDLE_UNUSABLE,
    BucketAccessSettings,
    BucketCAFileMissing,
    BucketClients,
    base_url,
    forbidden_reason,
    make_async_client,
)
from rbr_schemas import BucketRegistered, BucketState

NOW = datetime(2026, 11, 21, tzinfo=UTC)


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "cloud metadata"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),
        ("fd00:ec2::254", "reserved"),
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),
        ("2002:a9fe:a9fe::1", "cloud metadata"),
        ("localhost", "not an IP"),
        ("203.0.113.5/32", "not an IP"),
    ],
)
def test_forbidden_addresses_are_refused_with_a_reason(address: str, fragment: str) -> None:
    reason = forbidden_reason(address, [])
    assert reason is not None
    assert fragment in reason


@pytest.mark.parametrize("address", ["203.0.113.5", "10.1.2.3", "2001:db8::5", "8.8.8.8"])
def test_ordinary_addresses_are_allowed(address: str) -> None:
    assert forbidden_reason(address, []) is None


def test_operator_can_allow_a_forbidden_network() -> None:
    allowed = [ipaddress.ip_network("127.0.0.0/8")]
    assert forbidden_reason("127.0.0.7", allowed) is None
    assert forbidden_reason("169.254.169.254", allowed) is not None


def test_allowed_networks_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RBR_SECRET_KEY", "k")
    monkeypatch.setenv("RBR_ALLOWED_BUCKET_NETWORKS", "127.0.0.0/8, ::1/128")
    settings = BucketAccessSettings()
    assert [str(n) for n in settings.allowed_bucket_networks] == ["127.0.0.0/8", "::1/128"]


def record(ip: str, port: int | None = None) -> BucketRegistered:
    return BucketRegistered(
        bucket_id="b",
        name="rustbucket-a",
        state=BucketState.ACTIVE,
        ip_address=ip,
        port=port,
        token_ciphertext="c",
        registered_at=NOW,
        updated_at=NOW,
        version=1,
    )


def test_base_url() -> None:
    settings = BucketAccessSettings(secret_key="k")  # type: ignore[arg-type]
    assert base_url(record("203.0.113.5"), settings) == "https://203.0.113.5"
    assert base_url(record("203.0.113.5", 8443), settings) == "https://203.0.113.5:8443"
    assert base_url(record("2001:db8::5"), settings) == "https://[2001:db8::5]"


def test_bucket_clients_wait_for_the_ca_file_and_follow_its_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca_file = tmp_path / "ca.pem"
    settings = BucketAccessSettings(secret_key="k", bucket_ca_file=str(ca_file))  # type: ignore[arg-type]
    made: list[object] = []
    clients = BucketClients(
        settings, lambda verify: made.append(verify) or httpx.Client(verify=verify)
    )

    assert clients.current() is None
    assert clients.current() is None
    # Expected on a fresh local stack until the simulator writes the file: one warning that
    # says what to do, no error.
    missing = [r for r in caplog.records if f"RBR_BUCKET_CA_FILE {ca_file}" in r.message]
    assert [r.levelname for r in missing] == ["WARNING"]
    assert "does not exist yet" in missing[0].message
    assert "`rbr simulate` writes it" in missing[0].message
    assert CA_BUNDLE_UNUSABLE._value.get() == 1  # operators alert on this gauge

    first_ca = trustme.CA()
    first_ca.cert_pem.write_to_path(str(ca_file))
    first = clients.current()
    assert first is not None
    assert CA_BUNDLE_UNUSABLE._value.get() == 0
    assert clients.current() is first

    trustme.CA().cert_pem.write_to_path(str(ca_file))
    os.utime(ca_file, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    second = clients.current()
    assert second is not None
    assert second is not first
    assert clients.made() == [first, second]
    for client in clients.made():
        client.close()


def test_bucket_clients_report_an_unreadable_bundle(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("not a certificate")
    settings = BucketAccessSettings(secret_key="k", bucket_ca_file=str(ca_file))  # type: ignore[arg-type]
    assert BucketClients(settings, lambda verify: httpx.Client(verify=verify)).current() is None


def test_a_missing_ca_file_is_named_with_what_to_do(tmp_path: Path) -> None:
    ca_file = tmp_path / "simulator-ca.pem"
    settings = BucketAccessSettings(secret_key="k", bucket_ca_file=str(ca_file))  # type: ignore[arg-type]
    with pytest.raises(BucketCAFileMissing) as missing:
        make_async_client(settings)
    assert str(missing.value) == (
        f"RBR_BUCKET_CA_FILE {ca_file} does not exist: on the local stack `rbr simulate` writes "
        "it when it starts the simulated fleet; otherwise point RBR_BUCKET_CA_FILE at the CA "
        "bundle that issued the buckets' certificates"
    )
