"""Registration as the real rustbucket sends it, on the real broker and MariaDB.

`rbr_testing.rustbucket_client` sends exactly the real client's request: `0.0.0.0` when it
could not learn its public address, a fresh name and token at every start, no enrollment key.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine, select, update

from rbr_runtime.db.tables import buckets, outbox
from rbr_runtime.secrets import TokenVault
from rbr_schemas import BUCKET_REGISTERED
from rbr_testing.broker import Broker
from rbr_testing.kafka import read_events
from rbr_testing.registry import TEST_SECRET_KEY, RegistrarFactory, RunningRegistrar
from rbr_testing.rustbucket_client import new_identity, post_like_rustbucket

vault = TokenVault.from_setting(TEST_SECRET_KEY)
PUBLIC = "93.184.216.34"


def registry_url(registrar: RunningRegistrar) -> str:
    """The URL an operator gives the honeypot (RUSTBUCKET_REGISTRY_URL)."""
    return f"{registrar.url}/api/v1/register_bucket"


def address_of(engine: Engine, name: str) -> str | None:
    with engine.connect() as connection:
        address: str | None = connection.execute(
            select(buckets.c.ip_address).where(buckets.c.name == name)
        ).scalar_one_or_none()
    return address


def stored_rows(engine: Engine) -> int:
    with engine.connect() as connection:
        return len(connection.execute(select(buckets.c.id)).all()) + len(
            connection.execute(select(outbox.c.id)).all()
        )


def test_the_real_clients_request_with_0_0_0_0_registers_the_peers_address(
    broker: Broker, registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    registrar = registrar_factory()
    name, token = new_identity()

    status, answer = post_like_rustbucket(registry_url(registrar), name, token)

    assert status == 200, answer
    assert answer["status"] == "pending"
    assert address_of(mysql_engine, name) == "127.0.0.1"
    events = read_events(broker.bootstrap, BUCKET_REGISTERED, at_least=1)
    assert [(e.subject, e.data.ip_address) for e in events] == [(name, "127.0.0.1")]


def test_an_unspecified_ipv6_address_registers_the_ipv6_peer(
    registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    registrar = registrar_factory(http_host="::1", allowed_bucket_networks="::1/128")
    url = f"http://[::1]:{registrar.registrar.http.port}/api/v1/register_bucket"
    first, first_token = new_identity()
    second, second_token = new_identity()

    assert post_like_rustbucket(url, first, first_token, ip_address="::")[0] == 200
    assert post_like_rustbucket(url, second, second_token)[0] == 200

    assert address_of(mysql_engine, first) == "::1"
    assert address_of(mysql_engine, second) == "::1"


def test_x_forwarded_for_is_ignored_from_a_peer_that_is_not_a_trusted_proxy(
    registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    registrar = registrar_factory()  # no RBR_TRUSTED_PROXIES
    name, token = new_identity()
    forwarded = (("X-Forwarded-For", PUBLIC), ("Forwarded", f"for={PUBLIC}"))

    status, _ = post_like_rustbucket(registry_url(registrar), name, token, headers=forwarded)

    assert status == 200
    assert address_of(mysql_engine, name) == "127.0.0.1"


def test_x_forwarded_for_from_a_trusted_proxy_gives_the_rightmost_untrusted_hop(
    registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    registrar = registrar_factory(trusted_proxies="127.0.0.1/32,10.0.0.0/8")
    name, token = new_identity()
    # The honeypot (or an attacker) wrote 6.6.6.6 itself; the proxies appended the rest.
    chain = (("X-Forwarded-For", f"6.6.6.6, {PUBLIC}, 10.0.0.9"),)

    status, _ = post_like_rustbucket(registry_url(registrar), name, token, headers=chain)

    assert status == 200
    assert address_of(mysql_engine, name) == PUBLIC


def test_the_forwarded_header_is_read_when_the_proxies_write_it(
    registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    registrar = registrar_factory(trusted_proxies="127.0.0.1/32", trusted_proxy_header="forwarded")
    name, token = new_identity()
    headers = (
        ("Forwarded", 'for="[2001:4860:4860::8888]:4711";proto=https'),
        ("X-Forwarded-For", PUBLIC),  # not the header these proxies write: ignored
    )

    status, _ = post_like_rustbucket(registry_url(registrar), name, token, headers=headers)

    assert status == 200
    assert address_of(mysql_engine, name) == "2001:4860:4860::8888"


def test_a_specified_address_is_kept_whatever_the_request_came_from(
    registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    registrar = registrar_factory(trusted_proxies="127.0.0.1/32")
    name, token = new_identity()
    status, _ = post_like_rustbucket(
        registry_url(registrar),
        name,
        token,
        ip_address=PUBLIC,
        headers=(("X-Forwarded-For", "8.8.8.8"),),
    )
    assert status == 200
    assert address_of(mysql_engine, name) == PUBLIC


def test_a_substituted_address_that_is_forbidden_is_refused_with_the_reason(
    registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    registrar = registrar_factory(allowed_bucket_networks="")  # loopback not allowed
    name, token = new_identity()

    status, answer = post_like_rustbucket(registry_url(registrar), name, token)

    assert status == 422
    [error] = answer["errors"]
    assert error["field"] == "ip_address"
    message = error["message"]
    assert "is unspecified (0.0.0.0)" in message
    assert "the address the registration came from is used: 127.0.0.1" in message
    assert "loopback" in message
    assert "RBR_ALLOWED_BUCKET_NETWORKS" in message
    assert token not in json.dumps(answer)
    assert stored_rows(mysql_engine) == 0


@pytest.mark.parametrize(
    ("hop", "expected"),
    [
        ("10.9.8.7", "private (RFC 1918)"),
        ("169.254.169.254", "cloud metadata address"),
        ("unknown", "cannot be told"),
    ],
)
def test_a_forwarded_address_that_is_forbidden_or_unknown_is_refused(
    registrar_factory: RegistrarFactory, mysql_engine: Engine, hop: str, expected: str
) -> None:
    registrar = registrar_factory(
        trusted_proxies="127.0.0.1/32", allowed_bucket_networks="169.254.0.0/16"
    )
    name, token = new_identity()

    status, answer = post_like_rustbucket(
        registry_url(registrar), name, token, headers=(("X-Forwarded-For", hop),)
    )

    assert status == 422
    assert answer["errors"][0]["field"] == "ip_address"
    assert expected in answer["errors"][0]["message"]
    assert stored_rows(mysql_engine) == 0


def test_an_address_change_by_the_same_honeypot_is_an_update(
    registrar_factory: RegistrarFactory, mysql_engine: Engine
) -> None:
    registrar = registrar_factory(trusted_proxies="127.0.0.1/32")
    name, token = new_identity()
    url = registry_url(registrar)
    assert post_like_rustbucket(url, name, token, headers=(("X-Forwarded-For", PUBLIC),))[0] == (
        200
    )
    with mysql_engine.begin() as connection:  # an operator approves it meanwhile
        connection.execute(update(buckets).where(buckets.c.name == name).values(state="active"))

    status, answer = post_like_rustbucket(
        url, name, token, headers=(("X-Forwarded-For", "8.8.8.8"),)
    )

    assert (status, answer["status"]) == (200, "updated")
    assert address_of(mysql_engine, name) == "8.8.8.8"
