"""Which bucket addresses the registry may call, and how it builds a bucket's URL."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import trustme
from pydantic import ValidationError

from rbr_runtime.buckets import (
    CA_BUNDLE_UNUSABLE,
    BucketAccessSettings,
    BucketCAFileMissing,
    BucketClients,
    RefusalLog,
    base_url,
    forbidden_port_reason,
    forbidden_reason,
    make_async_client,
    refused_call,
)
from rbr_schemas import BucketRegistered, BucketState

NOW = datetime(2026, 11, 21, tzinfo=UTC)


# Every form the security run registered and saw called, and the other refused ranges.
REFUSED = [
    ("127.0.0.1", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.1", "private (RFC 1918) addresses (10.0.0.0/8)"),
    ("172.16.0.1", "private (RFC 1918) addresses (172.16.0.0/12)"),
    ("172.31.255.254", "private (RFC 1918)"),
    ("192.168.1.1", "private (RFC 1918) addresses (192.168.0.0/16)"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fc00::1", "unique local"),
    ("fd12:3456::1", "unique local"),
    ("fec0::1", "site-local"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("192.0.0.8", "IETF protocol assignment"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.1", "documentation"),
    ("203.0.113.5", "documentation"),
    ("2001:db8::5", "documentation"),
    ("3fff::1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("2001:2::1", "IETF protocol assignment"),
    ("192.88.99.1", "6to4 relay"),
    ("100::1", "discard-only"),
    ("64:ff9b:1::a00:1", "local-use NAT64"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("5f00::1", "segment routing"),
    # Embedded IPv4: judged by the IPv4 address they lead to.
    ("::ffff:127.0.0.1", "it leads to 127.0.0.1, loopback"),
    ("::ffff:10.0.0.1", "it leads to 10.0.0.1, private"),
    ("::127.0.0.1", "it leads to 127.0.0.1, loopback"),
    ("::10.0.0.1", "it leads to 10.0.0.1, private"),
    ("::2", "it leads to 0.0.0.2, unspecified"),
    ("2002:a00:1::1", "it leads to 10.0.0.1, private"),
    ("64:ff9b::a00:1", "it leads to 10.0.0.1, private"),
    # Cloud metadata, whatever form.
    ("169.254.169.254", "cloud metadata address (AWS, Azure, Google Cloud"),
    ("::169.254.169.254", "it leads to 169.254.169.254, a cloud metadata address"),
    ("::ffff:169.254.169.254", "it leads to 169.254.169.254, a cloud metadata address"),
    ("64:ff9b::a9fe:a9fe", "cloud metadata"),
    ("2002:a9fe:a9fe::1", "cloud metadata"),
    ("100.100.100.200", "cloud metadata address (Alibaba Cloud)"),
    ("168.63.129.16", "cloud metadata address (Azure WireServer)"),
    ("169.254.170.2", "cloud metadata address (AWS ECS"),
    ("fd00:ec2::254", "cloud metadata address (AWS)"),
    ("fd20:ce::254", "cloud metadata address (Google Cloud)"),
    ("fd00:a9fe:a9fe::1", "cloud metadata"),
    ("fd00:42::42", "cloud metadata address (Scaleway)"),
    ("localhost", "not an IP"),
    ("203.0.113.5/32", "not an IP"),
]


@pytest.mark.parametrize(("address", "fragment"), REFUSED)
def test_forbidden_addresses_are_refused_with_a_reason(address: str, fragment: str) -> None:
    reason = forbidden_reason(address, [])
    assert reason is not None
    assert fragment in reason


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_reason(address, []) is None


def test_operator_can_allow_a_forbidden_network() -> None:
    allowed = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.20.0.0/16")]
    assert forbidden_reason("127.0.0.7", allowed) is None
    assert forbidden_reason("10.20.3.4", allowed) is None
    assert forbidden_reason("::ffff:10.20.3.4", allowed) is None
    assert forbidden_reason("::10.20.3.4", allowed) is None
    assert forbidden_reason("10.21.0.1", allowed) is not None
    assert forbidden_reason("169.254.169.254", allowed) is not None


@pytest.mark.parametrize(
    ("network", "metadata"),
    [
        ("169.254.0.0/16", "169.254.169.254"),
        ("100.64.0.0/10", "100.100.100.200"),
        ("fc00::/7", "fd00:ec2::254"),
        ("0.0.0.0/0", "168.63.129.16"),
    ],
)
def test_cloud_metadata_stays_refused_inside_an_allowed_network(
    network: str, metadata: str
) -> None:
    allowed = [ipaddress.ip_network(network)]
    reason = forbidden_reason(metadata, allowed)
    assert reason is not None
    assert "cloud metadata" in reason


def test_allowed_networks_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RBR_SECRET_KEY", "k")
    monkeypatch.setenv("RBR_ALLOWED_BUCKET_NETWORKS", "127.0.0.0/8, ::1/128")
    settings = BucketAccessSettings()
    assert [str(n) for n in settings.allowed_bucket_networks] == ["127.0.0.0/8", "::1/128"]


def test_allowed_ports_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RBR_SECRET_KEY", "k")
    monkeypatch.setenv("RBR_ALLOWED_BUCKET_PORTS", "8443, 9000-9100")
    settings = BucketAccessSettings()
    assert settings.allowed_bucket_ports == [(8443, 8443), (9000, 9100)]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http", "is not a port (8443) or a range of ports"),
        ("9100-9000", "a range goes from the lower port to the higher one"),
        ("0", "greater than or equal to 1"),
        ("70000", "less than or equal to 65535"),
    ],
)
def test_bad_allowed_ports_are_refused_at_start(value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        BucketAccessSettings(secret_key="k", allowed_bucket_ports=value)  # type: ignore[arg-type]


def test_only_443_and_the_allowed_ports_are_called() -> None:
    allowed = [(8443, 8443), (9000, 9100)]
    assert forbidden_port_reason(443, []) is None
    assert forbidden_port_reason(8443, allowed) is None
    assert forbidden_port_reason(9050, allowed) is None
    for port in (6379, 22, 80, 8444, 9101):
        reason = forbidden_port_reason(port, allowed)
        assert reason is not None
        assert f"port {port} is not called" in reason
    assert forbidden_port_reason(8080, [], default_port=8080) is None


def test_refused_call_checks_the_address_and_the_port_a_bucket_is_called_on() -> None:
    settings = BucketAccessSettings(  # type: ignore[call-arg]
        secret_key="k",  # type: ignore[arg-type]
        allowed_bucket_networks="10.0.0.0/8",  # type: ignore[arg-type]
        allowed_bucket_ports="8443",  # type: ignore[arg-type]
    )
    assert refused_call(record("10.1.2.3"), settings) is None
    assert refused_call(record("10.1.2.3", 8443), settings) is None
    assert "port 6379 is not called" in (refused_call(record("10.0.0.1", 6379), settings) or "")
    assert "private" in (refused_call(record("192.168.1.1", 8443), settings) or "")
    # A bucket without a port is called on RBR_BUCKET_DEFAULT_PORT, which the operator chose.
    on_8080 = settings.model_copy(update={"bucket_default_port": 8080})
    assert refused_call(record("10.1.2.3"), on_8080) is None
    assert refused_call(record("10.1.2.3", 443), on_8080) is None


def test_a_refused_bucket_is_logged_once_per_reason(caplog: pytest.LogCaptureFixture) -> None:
    refusals = RefusalLog()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            refusals.warn("rustbucket-a", "refusing to call 10.0.0.1: private")
        refusals.warn("rustbucket-a", "refusing to call 10.0.0.2: private")
        refusals.warn("rustbucket-b", "refusing to call 10.0.0.1: private")
    assert [r.getMessage() for r in caplog.records] == [
        "bucket rustbucket-a not called: refusing to call 10.0.0.1: private",
        "bucket rustbucket-a not called: refusing to call 10.0.0.2: private",
        "bucket rustbucket-b not called: refusing to call 10.0.0.1: private",
    ]


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
