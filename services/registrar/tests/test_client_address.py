"""The address a registration came from: the peer, or a trusted proxy's forwarding header."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from rbr_registrar.api import UNSPECIFIED_ADDRESSES
from rbr_registrar.client_address import (
    ProxyHeader,
    UnknownClientAddress,
    client_address,
    forwarded_hops,
    is_unspecified,
    x_forwarded_for_hops,
)
from rbr_registrar.models import RegistrationRequest
from rbr_registrar.settings import RegistrarSettings

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


@pytest.mark.parametrize("address", ["0.0.0.0", "::"])
def test_the_unspecified_addresses_are_recognised(address: str) -> None:
    assert is_unspecified(address)


@pytest.mark.parametrize("address", ["0.0.0.1", "::1", "198.51.100.7", "not an address"])
def test_other_addresses_are_not_unspecified(address: str) -> None:
    assert not is_unspecified(address)


def test_an_untrusted_peer_is_the_client_whatever_its_headers_say() -> None:
    assert client_address("93.184.216.34", ["8.8.8.8"], PROXIES) == "93.184.216.34"
    assert client_address("93.184.216.34", ["8.8.8.8"], []) == "93.184.216.34"


def test_an_ipv4_mapped_peer_is_given_as_ipv4() -> None:
    assert client_address("::ffff:93.184.216.34", [], PROXIES) == "93.184.216.34"


def test_the_rightmost_untrusted_hop_is_the_client_behind_trusted_proxies() -> None:
    # The client wrote 6.6.6.6 itself; the first proxy appended the real peer, the second
    # proxy appended the first.
    header = ["6.6.6.6, 93.184.216.34", "10.1.1.1"]
    assert client_address("10.2.2.2", header, PROXIES) == "93.184.216.34"


def test_a_trusted_proxy_without_a_header_is_itself_the_client() -> None:
    assert client_address("10.2.2.2", [], PROXIES) == "10.2.2.2"


def test_hops_that_are_all_trusted_give_the_leftmost() -> None:
    assert client_address("10.2.2.2", ["10.3.3.3, 10.4.4.4"], PROXIES) == "10.3.3.3"


def test_a_hop_that_is_not_an_address_means_the_client_cannot_be_told() -> None:
    with pytest.raises(UnknownClientAddress, match="not an IP address"):
        client_address("10.2.2.2", ["93.184.216.34, unknown"], PROXIES)


def test_no_peer_means_the_client_cannot_be_told() -> None:
    with pytest.raises(UnknownClientAddress, match="does not know"):
        client_address(None, [], PROXIES)


def test_ports_and_brackets_are_stripped_from_x_forwarded_for() -> None:
    assert x_forwarded_for_hops(["93.184.216.34:5123, [2001:db8::1]:80, 2001:db8::2"]) == [
        "93.184.216.34",
        "2001:db8::1",
        "2001:db8::2",
    ]


def test_forwarded_for_nodes_are_read_from_every_element_and_line() -> None:
    values = [
        'for=192.0.2.43;proto=https, for="[2001:db8:cafe::17]:4711";by=10.0.0.1',
        'proto=http;For="198.51.100.17:80", by=10.0.0.2',
    ]
    assert forwarded_hops(values) == ["192.0.2.43", "2001:db8:cafe::17", "198.51.100.17", ""]


def test_the_forwarded_header_is_used_when_the_proxies_write_it() -> None:
    header = ['for=6.6.6.6, for="[2001:4860:4860::8888]:4711"', "for=10.1.1.1"]
    got = client_address("fd00::5", header, PROXIES, ProxyHeader.FORWARDED)
    assert got == "2001:4860:4860::8888"


def test_a_forwarded_element_without_for_stops_the_walk() -> None:
    with pytest.raises(UnknownClientAddress, match="forwarded hop"):
        client_address(
            "10.2.2.2", ["for=93.184.216.34, proto=https"], PROXIES, ProxyHeader.FORWARDED
        )


def test_obfuscated_forwarded_identifiers_are_not_addresses() -> None:
    with pytest.raises(UnknownClientAddress):
        client_address("10.2.2.2", ["for=_hidden"], PROXIES, ProxyHeader.FORWARDED)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("trusted_proxies", "not-a-network"),
        ("trusted_proxy_header", "x-real-ip"),
        ("pending_expiry", "-1"),
    ],
)
def test_bad_settings_are_refused_at_start(setting: str, value: str) -> None:
    with pytest.raises(ValidationError, match=setting):
        RegistrarSettings(secret_key="k", **{setting: value})  # type: ignore[arg-type]


def test_trusted_proxies_are_read_from_a_comma_separated_variable() -> None:
    settings = RegistrarSettings(secret_key="k", trusted_proxies="10.0.0.0/8, fd00::/8")
    assert settings.trusted_proxies == PROXIES


@pytest.mark.parametrize(
    "sent", ["0.0.0.0", " 0.0.0.0 ", "::", "0:0:0:0:0:0:0:0", "::0", "0::", "203.0.113.7", "::1"]
)
def test_a_payloads_address_is_unspecified_as_is_unspecified_says(sent: str) -> None:
    payload = RegistrationRequest(
        name="rustbucket-a", ip_address=sent, operating_system="linux", token="t" * 32
    )
    assert (payload.ip_address in UNSPECIFIED_ADDRESSES) == is_unspecified(sent.strip())
