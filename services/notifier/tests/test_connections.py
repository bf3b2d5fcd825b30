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
from rbr_notifier.senders.connections import Response, _HTTPConnection
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


@pytest.mark.parametrize("raw", ANSWERS, ids=lambda raw: raw.split(b"\r\n")[0].decode())
def test_answers_read_as_http_client_reads_them(raw: bytes) -> None:
    assert _read(Response, raw) == _read(http.client.HTTPResponse, raw)


def _read(kind: type[http.client.HTTPResponse], raw: bytes) -> tuple[object, ...]:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(raw)
        theirs.shutdown(socket.SHUT_WR)
        response = kind(ours, method="POST")
        response.begin()
        framing = (response.will_close, response.length, response.chunked)
        return (
            response.status,
            response.reason,
            response.version,
            response.getheaders(),
            response.getheader("retry-after"),
            framing,
            response.read(),
        )


@pytest.mark.parametrize("body", [b'{"kind":"trigger"}', b"", None])
def test_a_request_goes_out_in_one_write(
    monkeypatch: pytest.MonkeyPatch, body: bytes | None
) -> None:
    writes: list[bytes] = []
    monkeypatch.setattr(
        http.client.HTTPConnection, "send", lambda _self, data: writes.append(bytes(data))
    )
    for event in ("trigger", "resolve"):
        connection = _HTTPConnection("receiver.invalid", 8080)
        connection.request("POST", "/hook", body=body, headers={"X-Rbr-Event": event})

    assert len(writes) == 2
    for write, event in zip(writes, ("trigger", "resolve"), strict=True):
        head, _, sent = write.partition(b"\r\n\r\n")
        assert head.startswith(b"POST /hook HTTP/1.1\r\nHost: receiver.invalid:8080\r\n")
        assert f"X-Rbr-Event: {event}".encode() in head
        assert sent == (body or b"")
