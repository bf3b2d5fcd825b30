"""Bad input gets a clear 4xx that names what is wrong, never a 500, never the token back.

One registrar (real broker, real MariaDB) serves the whole table: enrollment keys are
required, and only the documentation ranges the payloads use (203.0.113.0/24, 198.51.100.0/24,
so that no real host is ever named) are let through the forbidden-address check.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from rbr_registrar.main import Registrar
from rbr_runtime.db.engine import make_engine
from rbr_runtime.db.tables import buckets
from rbr_testing.broker import Broker
from rbr_testing.mariadb import truncate_all
from rbr_testing.registry import TEST_OPERATOR_KEY, registrar_settings
from rbr_testing.services import running

pytestmark = [pytest.mark.broker, pytest.mark.mariadb]

KEY = "enrol-key-1"
TOKEN = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
OTHER_TOKEN = "Zz9yXx8wVv7uTt6sRr5qPp4oNn3mMm2l"
TAKEN_NAME = "rustbucket-taken000"
DOCUMENTATION_NETWORKS = "203.0.113.0/24,198.51.100.0/24"
ALLOWED_PORT = "8443"


@pytest.fixture(scope="module")
def api(mysql_database_url: str) -> Iterator[httpx.Client]:
    """A registrar requiring enrollment keys and refusing non-public addresses, with one bucket."""
    broker = Broker()
    broker.start()
    engine = make_engine(mysql_database_url)
    truncate_all(engine)
    settings = registrar_settings(
        broker,
        engine,
        enrollment_keys=KEY,
        allowed_bucket_networks=DOCUMENTATION_NETWORKS,
        allowed_bucket_ports=ALLOWED_PORT,
        max_body_bytes=65536,
    )
    registrar = Registrar(settings)
    try:
        with (
            running(registrar.service),
            httpx.Client(base_url=f"http://127.0.0.1:{registrar.http.port}") as client,
        ):
            taken = client.post("/register_bucket", json=payload(name=TAKEN_NAME))
            assert taken.status_code == 200, taken.text
            yield client
    finally:
        broker.stop()
        engine.dispose()


def payload(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "rustbucket-good0001",
        "ip_address": "203.0.113.7",
        "operating_system": "linux (x86_64)",
        "token": TOKEN,
        "registration_key": KEY,
    }
    for field, value in changes.items():
        if value is ...:
            body.pop(field, None)
        else:
            body[field] = value
    return body


# The operations that take a JSON body from a bucket.
BODY_OPERATIONS = [
    ("POST", "/register_bucket"),
    ("POST", "/api/v1/register_bucket/"),
    ("PATCH", f"/api/v1/buckets/{TAKEN_NAME}/self"),
]


def post_json(body: Any) -> dict[str, Any]:
    return {"method": "POST", "url": "/register_bucket", "json": body}


# (case id, request, expected status, expected field, words the message must contain)
CASES: list[tuple[str, dict[str, Any], int, str | None, str]] = [
    ("missing name", post_json(payload(name=...)), 422, "name", "is required"),
    ("missing token", post_json(payload(token=...)), 422, "token", "is required"),
    ("missing ip", post_json(payload(ip_address=...)), 422, "ip_address", "is required"),
    (
        "missing os",
        post_json(payload(operating_system=...)),
        422,
        "operating_system",
        "is required",
    ),
    ("name not a string", post_json(payload(name=12)), 422, "name", "must be a string"),
    (
        "name with a path",
        post_json(payload(name="../../etc/passwd")),
        422,
        "name",
        "letters, digits",
    ),
    ("name too long", post_json(payload(name="a" * 129)), 422, "name", "letters, digits"),
    ("port as text", post_json(payload(port="8443")), 422, "port", "must be an integer"),
    ("port out of range", post_json(payload(port=70000)), 422, "port", "at most 65535"),
    ("port zero", post_json(payload(port=0)), 422, "port", "at least 1"),
    ("port true", post_json(payload(port=True)), 422, "port", "must be an integer"),
    (
        "pin too short",
        post_json(payload(tls_cert_sha256="ab" * 31)),
        422,
        "tls_cert_sha256",
        "64 hex digits",
    ),
    (
        "pin not hex",
        post_json(payload(tls_cert_sha256="zz" * 32)),
        422,
        "tls_cert_sha256",
        "64 hex digits",
    ),
    (
        "pin as number",
        post_json(payload(tls_cert_sha256=12)),
        422,
        "tls_cert_sha256",
        "must be a string",
    ),
    ("metric as number", post_json(payload(cpu_usage=12)), 422, "cpu_usage", "must be a string"),
    ("metric too long", post_json(payload(uptime="9" * 300)), 422, "uptime", "at most 255"),
    (
        "control characters",
        post_json(payload(operating_system="linux\x1b[31m")),
        422,
        "operating_system",
        "control characters",
    ),
    (
        "ip not an ip",
        post_json(payload(ip_address="rustbucket.example.com")),
        422,
        "ip_address",
        "IPv4 or IPv6 address literal",
    ),
    (
        "ip as number",
        post_json(payload(ip_address=2130706433)),
        422,
        "ip_address",
        "must be a string",
    ),
    ("loopback ip", post_json(payload(ip_address="127.0.0.1")), 422, "ip_address", "loopback"),
    ("ipv6 loopback", post_json(payload(ip_address="::1")), 422, "ip_address", "loopback"),
    (
        "cloud metadata ip",
        post_json(payload(ip_address="169.254.169.254")),
        422,
        "ip_address",
        "cloud metadata",
    ),
    ("unspecified ip", post_json(payload(ip_address="0.0.0.0")), 422, "ip_address", "unspecified"),
    ("multicast ip", post_json(payload(ip_address="224.0.0.1")), 422, "ip_address", "multicast"),
    (
        "mapped loopback",
        post_json(payload(ip_address="::ffff:127.0.0.1")),
        422,
        "ip_address",
        "loopback",
    ),
    (
        "ipv6 with a zone",
        post_json(payload(ip_address="2001:db8::1%eth0")),
        422,
        "ip_address",
        "without a zone",
    ),
    ("token too short", post_json(payload(token="short")), 422, "token", "16 to 256"),
    (
        "token with a space",
        post_json(payload(token="abc def ghi jkl mno pqr")),
        422,
        "token",
        "without spaces",
    ),
    (
        "token not a string",
        post_json(payload(token=1234567890123456789)),
        422,
        "token",
        "must be a string",
    ),
    (
        "bad s3 bucket",
        post_json(payload(s3_bucket_name="Not_A_Bucket")),
        422,
        "s3_bucket_name",
        "valid S3 bucket name",
    ),
    (
        "bad s3 region",
        post_json(payload(s3_bucket_name="logs-bucket", s3_region="Mars 1")),
        422,
        "s3_region",
        "AWS region",
    ),
    (
        "body not json",
        {
            "method": "POST",
            "url": "/register_bucket",
            "content": b"name=x&token=y",
            "headers": {"Content-Type": "application/json"},
        },
        422,
        "body",
        "not valid JSON",
    ),
    ("body a list", post_json([payload()]), 422, "body", "JSON object"),
    *[
        (
            f"body not utf-8, {method} {url}",
            {
                "method": method,
                "url": url,
                # Latin-1 text where UTF-8 is required: 0xe9 starts a sequence never finished.
                "content": b'{"name": "rustbucket-caf\xe9", "cpu_usage": "1%"}',
                "headers": {"Content-Type": "application/json", "Authorization": f"Token {TOKEN}"},
            },
            422,
            "body",
            "is not valid UTF-8 JSON",
        )
        for method, url in BODY_OPERATIONS
    ],
    (
        "body nested too deeply",
        {
            "method": "POST",
            "url": "/register_bucket",
            "content": b"[" * 5000 + b"]" * 5000,
            "headers": {"Content-Type": "application/json"},
        },
        422,
        "body",
        "nested too deeply",
    ),
    (
        "body empty",
        {
            "method": "POST",
            "url": "/register_bucket",
            "content": b"",
            "headers": {"Content-Type": "application/json"},
        },
        422,
        "body",
        "required",
    ),
    (
        "body huge",
        post_json(payload(operating_system="x" * 70_000)),
        413,
        None,
        "larger than the 65536 bytes",
    ),
    (
        "body huge, chunked",
        {
            "method": "POST",
            "url": "/register_bucket",
            "content": iter([b'{"name": "', b"x" * 70_000, b'"}']),
            "headers": {"Content-Type": "application/json"},
        },
        413,
        None,
        "larger than the 65536 bytes",
    ),
    (
        "missing enrollment key",
        post_json(payload(registration_key=...)),
        401,
        None,
        "requires an enrollment key",
    ),
    (
        "wrong enrollment key",
        post_json(payload(registration_key="guess")),
        403,
        None,
        "enrollment key not accepted",
    ),
    (
        "wrong bearer key",
        {**post_json(payload(registration_key=...)), "headers": {"Authorization": "Bearer guess"}},
        403,
        None,
        "enrollment key not accepted",
    ),
    (
        "name hijack",
        post_json(payload(name=TAKEN_NAME, token=OTHER_TOKEN, ip_address="198.51.100.66")),
        409,
        None,
        "different token",
    ),
    (
        "operator without key",
        {"method": "GET", "url": "/api/v1/buckets"},
        401,
        None,
        "operator key",
    ),
    (
        "operator wrong key",
        {"method": "GET", "url": "/api/v1/buckets", "headers": {"Authorization": "Bearer nope"}},
        403,
        None,
        "operator key not accepted",
    ),
    (
        "operator bad limit",
        {
            "method": "GET",
            "url": "/api/v1/buckets?limit=0",
            "headers": {"Authorization": f"Bearer {TEST_OPERATOR_KEY}"},
        },
        422,
        "limit",
        "at least 1",
    ),
    (
        "operator bad state",
        {
            "method": "GET",
            "url": "/api/v1/buckets?state=sleepy",
            "headers": {"Authorization": f"Bearer {TEST_OPERATOR_KEY}"},
        },
        422,
        "state",
        "must be one of",
    ),
    (
        "self update without token",
        {
            "method": "PATCH",
            "url": f"/api/v1/buckets/{TAKEN_NAME}/self",
            "json": {"cpu_usage": "1%"},
        },
        401,
        None,
        "Token <token>",
    ),
    (
        "self update wrong token",
        {
            "method": "PATCH",
            "url": f"/api/v1/buckets/{TAKEN_NAME}/self",
            "json": {"cpu_usage": "1%"},
            "headers": {"Authorization": f"Token {OTHER_TOKEN}"},
        },
        403,
        None,
        "token not accepted",
    ),
    (
        "self update region alone",
        {
            "method": "PATCH",
            "url": f"/api/v1/buckets/{TAKEN_NAME}/self",
            "json": {"s3_region": "eu-west-1"},
            "headers": {"Authorization": f"Token {TOKEN}"},
        },
        422,
        "s3_bucket_name",
        "is required when",
    ),
]


@pytest.mark.parametrize(
    ("request_args", "status", "field", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_input_is_refused_with_a_clear_message(
    api: httpx.Client, request_args: dict[str, Any], status: int, field: str | None, words: str
) -> None:
    answer = api.request(**request_args)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert TOKEN not in answer.text
    assert OTHER_TOKEN not in answer.text
    assert KEY not in answer.text
    if field is None:
        assert words in body["detail"]
        return
    messages = {error["field"]: error["message"] for error in body["errors"]}
    assert field in messages, body
    assert words in messages[field]
    assert f"{field}: {messages[field]}" in body["detail"]


def test_every_status_of_the_bucket_operations_is_in_the_openapi_document(
    api: httpx.Client,
) -> None:
    document = api.get("/openapi.json").json()
    answers = {
        "body not utf-8": {"content": b'{"name": "\xff\xfe"}'},
        "body nested too deeply": {"content": b"[" * 5000 + b"]" * 5000},
        "body not json": {"content": b"name=x"},
    }
    for method, url in BODY_OPERATIONS:
        path = url.replace(TAKEN_NAME, "{name}")
        documented = set(document["paths"][path][method.lower()]["responses"])
        for case, request in answers.items():
            answer = api.request(
                method, url, headers={"Content-Type": "application/json"}, **request
            )
            assert str(answer.status_code) in documented, (method, url, case, answer.text)
            assert answer.status_code != 400, answer.text


def test_name_hijack_changes_nothing(api: httpx.Client, mysql_database_url: str) -> None:
    api.post(
        "/register_bucket",
        json=payload(name=TAKEN_NAME, token=OTHER_TOKEN, ip_address="198.51.100.66"),
    )
    engine = make_engine(mysql_database_url)
    with engine.connect() as connection:
        row = connection.execute(select(buckets).where(buckets.c.name == TAKEN_NAME)).one()
    engine.dispose()
    assert (row.ip_address, row.version) == ("203.0.113.7", 1)


REGISTRATION_PATHS = ["/register_bucket", "/api/v1/register_bucket/"]
# (address, words the message must contain): every form the security run saw registered
# `active` and then called, and the other refused ranges.
REFUSED_ADDRESSES = [
    ("10.0.0.1", "private (RFC 1918)"),
    ("172.16.0.1", "private (RFC 1918)"),
    ("192.168.1.1", "private (RFC 1918)"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.100.100.200", "cloud metadata address (Alibaba Cloud)"),
    ("169.254.169.254", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
    ("fc00::1", "unique local"),
    ("::ffff:10.0.0.1", "it leads to 10.0.0.1, private"),
    ("::127.0.0.1", "it leads to 127.0.0.1, loopback"),
    ("::169.254.169.254", "it leads to 169.254.169.254, a cloud metadata address"),
    ("2002:a00:1::1", "it leads to 10.0.0.1, private"),
    ("64:ff9b::a00:1", "it leads to 10.0.0.1, private"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("192.0.2.1", "documentation"),
    ("198.18.0.1", "benchmarking"),
]


def stored(mysql_database_url: str, name: str) -> Any:
    engine = make_engine(mysql_database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(select(buckets).where(buckets.c.name == name)).first()
    finally:
        engine.dispose()


@pytest.mark.parametrize("path", REGISTRATION_PATHS)
@pytest.mark.parametrize(("address", "words"), REFUSED_ADDRESSES)
def test_refused_addresses_are_never_registered(
    api: httpx.Client, mysql_database_url: str, path: str, address: str, words: str
) -> None:
    name = "rustbucket-refused-" + re.sub(r"[^0-9a-f]", "-", address) + f"-{len(path)}"
    answer = api.post(path, json=payload(name=name, ip_address=address))
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["errors"]
    assert error["field"] == "ip_address"
    assert words in error["message"]
    assert stored(mysql_database_url, name) is None


@pytest.mark.parametrize("path", REGISTRATION_PATHS)
def test_only_443_and_the_allowed_ports_are_registered(
    api: httpx.Client, mysql_database_url: str, path: str
) -> None:
    suffix = "a" if path == REGISTRATION_PATHS[0] else "b"
    for port in (6379, 22, 80, 8080):
        name = f"rustbucket-port{port}{suffix}"
        answer = api.post(path, json=payload(name=name, port=port))
        assert answer.status_code == 422, answer.text
        [error] = answer.json()["errors"]
        assert error == {
            "field": "port",
            "message": f"is refused: port {port} is not called: buckets are called on 443 "
            "and the ports in RBR_ALLOWED_BUCKET_PORTS",
        }
        assert stored(mysql_database_url, name) is None

    both = api.post(
        path, json=payload(name=f"rustbucket-redis{suffix}", ip_address="10.0.0.1", port=6379)
    )
    assert both.status_code == 422
    assert [e["field"] for e in both.json()["errors"]] == ["ip_address", "port"]

    for port in (443, 8443):
        name = f"rustbucket-ok{port}{suffix}"
        answer = api.post(path, json=payload(name=name, token=f"{TOKEN}{port}", port=port))
        assert answer.status_code == 200, answer.text
        assert stored(mysql_database_url, name).port == port


def test_a_bucket_cannot_move_itself_with_a_self_update(
    api: httpx.Client, mysql_database_url: str
) -> None:
    # The self-update takes no address nor port: both are ignored, the bucket stays put.
    answer = api.patch(
        f"/api/v1/buckets/{TAKEN_NAME}/self",
        json={"ip_address": "10.0.0.1", "port": 6379, "cpu_usage": "3%"},
        headers={"Authorization": f"Token {TOKEN}"},
    )
    assert answer.status_code == 200, answer.text
    row = stored(mysql_database_url, TAKEN_NAME)
    assert (row.ip_address, row.port) == ("203.0.113.7", None)


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    choices: list[Any] = [
        None,
        rng.choice([True, False]),
        rng.randint(-(2**70), 2**70),
        rng.random() * 1e300,
        "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(0, 40)))
        .encode("utf-8", "surrogatepass")
        .decode("utf-8", "replace"),
        "x" * rng.randint(0, 5000),
        "203.0.113." + str(rng.randint(0, 400)),
    ]
    if depth < 2:
        choices.append([_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))])
        choices.append({"k": _random_value(rng, depth + 1)})
    return rng.choice(choices)


def test_random_payloads_never_cause_a_server_error(api: httpx.Client) -> None:
    rng = random.Random(20261121)
    fields = [
        "name",
        "ip_address",
        "operating_system",
        "token",
        "port",
        "cpu_usage",
        "memory_usage",
        "disk_space",
        "uptime",
        "connections",
        "s3_bucket_name",
        "s3_region",
        "s3_prefix",
        "registration_key",
    ]
    statuses = []
    for _ in range(250):
        body = payload()
        for field in rng.sample(fields, rng.randint(1, 4)):
            body[field] = _random_value(rng)
        answer = api.post(
            "/register_bucket",
            content=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        statuses.append(answer.status_code)
        assert answer.status_code < 500, (body, answer.text)
        assert TOKEN not in answer.text
    assert 422 in statuses
