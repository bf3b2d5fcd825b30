"""Which bucket addresses the registry may call, and how it builds a bucket's URL."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest

from rbr_runtime.buckets import BucketAccessSettings, base_url, forbidden_reason
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
