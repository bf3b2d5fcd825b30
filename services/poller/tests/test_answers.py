"""Reading and classifying bucket answers: hostile input is a reason, never an exception."""

from __future__ import annotations

import json
import ssl

import httpx
import pytest

from rbr_poller.answers import BadAnswer, classify_error, classify_status, parse_answer, sanitise
from rbr_schemas import PollErrorClass

NAME = "rustbucket-a1B2c3D4"


def entry(**fields: object) -> dict[str, object]:
    return {"name": NAME, "ip_address": "203.0.113.7", "cpu_usage": "12%", **fields}


def test_seed_shaped_answer_gives_the_bucket_update() -> None:
    answer = parse_answer(json.dumps({"status": "ok", "updates": [entry()]}).encode(), NAME)
    assert answer.status == "ok"
    assert answer.updates.cpu_usage == "12%"
    assert answer.updates.name == NAME


def test_the_entry_naming_the_bucket_is_used() -> None:
    body = {"status": "ok", "updates": [entry(name="rustbucket-other000"), entry(uptime="9")]}
    assert parse_answer(json.dumps(body).encode(), NAME).updates.uptime == "9"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>502 Bad Gateway</html>", "not JSON"),
        (b'{"status": "ok", "updates": [{"name": "', "not JSON"),
        (bytes(range(256)), "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"status": "ok"}', "no updates"),
        (b'{"status": "ok", "updates": {"cpu_usage": "12%"}}', "not a list"),
        (b'{"status": "ok", "updates": []}', "empty"),
        (b'{"status": "ok", "updates": ["x"]}', "other than objects"),
        (json.dumps({"updates": [entry(cpu_usage=12)]}).encode(), "cpu_usage is not a string"),
        (json.dumps({"updates": [entry(uptime="9" * 300)]}).encode(), "longer than 255"),
        (
            json.dumps({"updates": [entry(operating_system="x\x1b[2J")]}).encode(),
            "control characters",
        ),
        (json.dumps({"updates": [entry(connections="a\u202eb")]}).encode(), "control characters"),
        (json.dumps({"status": 5, "updates": [entry()]}).encode(), "status is not a string"),
        (json.dumps({"updates": [entry(name="rustbucket-other000")]}).encode(), "another bucket"),
    ],
)
def test_malformed_or_hostile_answers_are_refused_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(BadAnswer, match=reason):
        parse_answer(body, NAME)


def test_reasons_are_sanitised_and_bounded() -> None:
    assert sanitise("a\x00b\x1b[31mc" + "x" * 1000).startswith("a?b?[31mc")
    assert len(sanitise("x" * 1000)) == 300


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (httpx.ReadTimeout("slow"), PollErrorClass.TIMEOUT),
        (TimeoutError(), PollErrorClass.TIMEOUT),
        (httpx.ConnectError("refused"), PollErrorClass.CONNECT),
        (httpx.RemoteProtocolError("Server disconnected"), PollErrorClass.CONNECT),
        (httpx.ReadError("reset"), PollErrorClass.CONNECT),
    ],
)
def test_call_failures_are_classified(error: Exception, kind: PollErrorClass) -> None:
    assert classify_error(error, 10.0)[0] is kind


def test_certificate_failures_are_tls_errors() -> None:
    cause = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] self-signed")
    error = httpx.ConnectError("handshake failed")
    error.__cause__ = cause
    assert classify_error(error, 10.0)[0] is PollErrorClass.TLS


def test_refused_token_is_auth_and_other_statuses_http_status() -> None:
    assert classify_status(401)[0] is PollErrorClass.AUTH
    assert classify_status(403)[0] is PollErrorClass.AUTH
    assert classify_status(500) == (PollErrorClass.HTTP_STATUS, "HTTP 500")
