"""HTTP senders over kept-alive `http.client` connections: TLS, closed connections, proxies.

Against local receivers: an HTTPS one whose certificate comes from a throwaway CA (trustme),
and the plain HTTP receiver of rbr_testing answering as scripted.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme

from rbr_notifier.channels import parse_channels
from rbr_notifier.model import AlertState, AlertView, Kind, Notification
from rbr_notifier.senders import build_sender
from rbr_notifier.senders.base import Outcome, Sender
from rbr_notifier.senders.connections import (
    MAX_ANSWER_BODY,
    ConnectionPool,
    Stream,
    read_answer,
    request_head,
    target_of,
)
from rbr_schemas import Severity
from rbr_testing.http_receiver import HttpReceiver, Reply


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        """Keeps test output quiet."""


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on localhost answering 200; yields its URL and its CA's PEM file."""
    authority = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(context)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"https://localhost:{server.server_address[1]}", ca_file
    server.shutdown()
    server.server_close()


def webhook(url: str, **extra: Any) -> Sender:
    document = {"channels": [{"name": "siem", "type": "webhook", "url": url, **extra}]}
    return build_sender(parse_channels(document).channels[0], default_timeout=2.0)


def trigger() -> Notification:
    alert = AlertView(
        alert_id="3f6c2b1a-9d8e-5f7a-b6c5-d4e3f2a1b0c9",
        dedupe_key="bucket_unresponsive:rustbucket-a1",
        type="bucket_unresponsive",
        severity=Severity.HIGH,
        state=AlertState.FIRING,
        title="Bucket rustbucket-a1 unresponsive",
        detail="No successful poll for 15 minutes.",
        source="/rbr/poller",
        fired_at=datetime(2026, 11, 21, 9, 0, tzinfo=UTC),
        bucket="rustbucket-a1",
    )
    return Notification(Kind.TRIGGER, "siem", alert=alert)


def test_https_with_a_private_ca_is_delivered_and_without_it_refused_without_the_url(
    https_server: tuple[str, Path],
) -> None:
    url, ca_file = https_server
    trusting = webhook(f"{url}/hook-SECRET", ca_file=str(ca_file))
    stranger = webhook(f"{url}/hook-SECRET")

    assert trusting.send(trigger()).outcome is Outcome.OK
    assert trusting.send(trigger()).outcome is Outcome.OK  # on the kept-alive connection
    refused = stranger.send(trigger())

    assert refused.outcome is Outcome.RETRY
    assert refused.error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in refused.error
    assert "SECRET" not in refused.error
    assert "localhost:" not in refused.error
    trusting.close()
    stranger.close()


def test_a_server_closing_its_connections_costs_no_failed_send(
    http_receiver: HttpReceiver,
) -> None:
    http_receiver.respond(Reply(200, b"ok", {"Connection": "close"}))
    sender = webhook(f"{http_receiver.url}/hook")

    outcomes = [sender.send(trigger()).outcome for _ in range(5)]

    assert outcomes == [Outcome.OK] * 5
    assert len(http_receiver.wait_for_requests(5)) == 5
    sender.close()


def test_a_receiver_that_is_gone_is_a_retryable_failure(http_receiver: HttpReceiver) -> None:
    sender = webhook(f"{http_receiver.url}/hook-SECRET")
    http_receiver.stop()  # nothing listens on its port any more

    result = sender.send(trigger())

    assert result.outcome is Outcome.RETRY
    assert result.error is not None
    assert "SECRET" not in result.error
    sender.close()


def test_a_proxy_named_in_the_environment_is_used(
    http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The "proxy" is the receiver itself: a proxy is asked for the whole URL.
    monkeypatch.setenv("HTTP_PROXY", http_receiver.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    sender = webhook("http://hooks.example.invalid/hook")

    assert sender.send(trigger()).outcome is Outcome.OK

    (request,) = http_receiver.wait_for_requests(1)
    assert request.headers["host"] == "hooks.example.invalid"
    sender.close()


ANSWERS = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok",
    b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n",
    b"HTTP/1.1 429 Too Many\r\nRetry-After:  30 \r\nContent-Length: 4\r\n\r\nslow",
    b"HTTP/1.1 503 Down\r\nConnection: close\r\n\r\ngone for now",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nX-Folded: one\r\n two\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nbody",
    b"HTTP/1.0 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 3\r\n\r\nabc",
    b"HTTP/1.1 400 Bad\r\nContent-Length: -4\r\nNoColonLine\r\n\r\n",
]


BROKEN = [
    b"",
    b"HTTP/1.1\r\n\r\n",
    b"FTP/1.0 200 OK\r\n\r\n",
    b"HTTP/1.1 99 Low\r\n\r\n",
    b"HTTP/1.1 abc Odd\r\n\r\n",
    b"HTTP/2.0 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n",
    b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70000 + b"\r\n\r\n",
]
MORE_ANSWERS = [
    b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=1\r\nok\r\n0\r\nX-T: t\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nokEXTRA",
    b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nto the end",
    b"HTTP/1.1 200 OK\n\nbare line ends",
]


@pytest.mark.parametrize(
    "raw", ANSWERS + MORE_ANSWERS, ids=lambda raw: raw.split(b"\r\n")[0].decode()
)
def test_answers_read_as_http_client_reads_them(raw: bytes) -> None:
    assert _ours(raw) == _theirs(raw)


@pytest.mark.parametrize("raw", BROKEN, ids=lambda raw: repr(raw[:40]))
def test_broken_answers_fail_as_with_http_client(raw: bytes) -> None:
    with pytest.raises(http.client.HTTPException) as ours:
        _ours(raw)
    with pytest.raises(http.client.HTTPException) as theirs:
        _theirs(raw)

    assert type(ours.value) is type(theirs.value)


def _ours(raw: bytes) -> tuple[object, ...]:
    mine, peer = socket.socketpair()
    with mine, peer:
        peer.sendall(raw)
        peer.shutdown(socket.SHUT_WR)
        answer, will_close = read_answer(Stream(mine), "POST")
        return answer.status, answer.headers, will_close, answer.body


def _theirs(raw: bytes) -> tuple[object, ...]:
    mine, peer = socket.socketpair()
    with mine, peer:
        peer.sendall(raw)
        peer.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(mine, method="POST")
        response.begin()
        headers = {name.lower(): value for name, value in response.getheaders()}
        will_close = response.will_close
        return response.status, headers, will_close, response.read()


def _endless(head: bytes, piece: bytes) -> tuple[object, ...]:
    """Reads an answer whose body never ends: the head, then `piece` again and again."""
    mine, peer = socket.socketpair()

    def write_until_closed() -> None:
        try:
            peer.sendall(head)
            while True:
                peer.sendall(piece)
        except OSError:  # our side closed after reading what it keeps
            return

    writer = threading.Thread(target=write_until_closed, daemon=True)
    writer.start()
    with peer:
        with mine:
            answer, will_close = read_answer(Stream(mine), "POST")
        writer.join(10)
    return answer.status, len(answer.body), will_close


@pytest.mark.parametrize(
    ("head", "piece"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n", b"x" * 65536),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"10000\r\n" + b"x" * 65536 + b"\r\n",
        ),
        (b"HTTP/1.0 200 OK\r\n\r\n", b"x" * 65536),
    ],
    ids=["sized", "chunked", "to-the-close"],
)
def test_a_body_without_end_is_kept_to_its_cap_and_the_connection_dropped(
    head: bytes, piece: bytes
) -> None:
    # A delivered notification stays delivered (200), and memory stays bounded.
    assert _endless(head, piece) == (200, MAX_ANSWER_BODY, True)


URLS = [
    "http://receiver.invalid:8080/hook?token=1",
    "http://receiver.invalid/hook",
    "https://hooks.example.com/services/T1/B2",
    "https://hooks.example.com:8443",
    "http://[::1]:9000/ingest",
    "http://[fe80::1%25eth0]/x",
    "http://bücher.example/rbr",
]
HEADERS = [
    {"User-Agent": "rbr", "Content-Type": "application/json", "X-Rbr-Event": "trigger"},
    {"Host": "front.example", "accept-encoding": "gzip", "Authorization": "Bearer t"},
    {"Content-Length": "2", "X-Folded": "a\r\n b"},
    {"Transfer-Encoding": "identity"},
]


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("headers", HEADERS, ids=",".join)
def test_a_request_is_written_as_http_client_writes_it(
    monkeypatch: pytest.MonkeyPatch, url: str, headers: dict[str, str]
) -> None:
    writes: list[bytes] = []
    monkeypatch.setattr(
        http.client.HTTPConnection, "send", lambda _self, data: writes.append(bytes(data))
    )
    target = target_of(url)
    scheme, host, port = target.origin
    kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    kind(host, port).request("POST", target.path, body=b"{}", headers=headers)

    assert request_head("POST", target, headers, 2) + b"{}" == b"".join(writes)


@pytest.mark.parametrize(
    "headers",
    [{"X-Token": "SECRET\r\nX-Injected: 1"}, {"X-Token": "SECRET\n"}, {"Bad:Name": "v"}],
)
def test_a_header_http_client_refuses_is_refused_without_its_value(
    headers: dict[str, str],
) -> None:
    target = target_of("http://receiver.invalid/hook")
    with pytest.raises(ValueError) as ours:
        request_head("POST", target, headers, 0)
    with pytest.raises(ValueError):
        http.client.HTTPConnection("receiver.invalid").request("POST", "/hook", b"", headers)

    assert "SECRET" not in str(ours.value)


def test_a_target_with_control_characters_is_refused() -> None:
    with pytest.raises(http.client.InvalidURL):
        target_of("http://receiver.invalid/ho ok")


def test_a_request_goes_out_in_one_write_on_a_kept_connection(
    http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[bytes] = []
    connects: list[object] = []
    send, connect = Stream.send, ConnectionPool._connect

    def record_send(stream: Stream, data: bytes) -> None:
        writes.append(data)
        send(stream, data)

    def record_connect(pool: ConnectionPool, origin: Any) -> Stream:
        connects.append(origin)
        return connect(pool, origin)

    monkeypatch.setattr(Stream, "send", record_send)
    monkeypatch.setattr(ConnectionPool, "_connect", record_connect)
    pool = ConnectionPool(2.0, True, {"User-Agent": "rbr"})
    answers = [
        pool.post(f"{http_receiver.url}/hook", b'{"kind":"%s"}' % event, {"X-Rbr-Event": "x"})
        for event in (b"trigger", b"resolve")
    ]
    pool.close()

    assert [answer.status for answer in answers] == [200, 200]
    assert len(connects) == 1
    assert len(writes) == 2
    for write, event in zip(writes, (b"trigger", b"resolve"), strict=True):
        assert write.startswith(b"POST /hook HTTP/1.1\r\nHost: 127.0.0.1:")
        assert write.endswith(b'\r\n\r\n{"kind":"%s"}' % event)
