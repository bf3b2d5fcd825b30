"""Pinned bucket certificates: exactly the pinned certificate is accepted, else no byte is sent.

A real TLS server on loopback records every byte it receives after the handshake; the clients
are the httpx clients the poller (async) and the log-extractor (sync) call buckets with.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest
import trustme

from rbr_runtime.buckets import (
    BucketAccessSettings,
    BucketClients,
    PinMismatch,
    base_url,
    certificate_sha256,
    client_options,
    token_header,
)
from rbr_schemas import BucketRegistered, BucketState
from rbr_testing.waiting import wait_for

TOKEN = "pinned-bucket-token-0123456789"


@dataclass
class RecordingTLSServer:
    """Accepts TLS connections, records what each sends, answers any request with 200."""

    context: ssl.SSLContext
    received: list[bytes] = field(default_factory=list)
    handshakes: int = 0
    sock: socket.socket = field(default_factory=socket.socket)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(raw,), daemon=True).start()

    def _connection(self, raw: socket.socket) -> None:
        raw.settimeout(5)
        data = b""
        try:
            with self.context.wrap_socket(raw, server_side=True) as tls:
                self.handshakes += 1
                while b"\r\n\r\n" not in data:
                    piece = tls.recv(65536)
                    if not piece:
                        break
                    data += piece
                if b"\r\n\r\n" in data:
                    body = b'{"status": "ok"}'
                    tls.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                    )
        except (OSError, ssl.SSLError):
            pass
        finally:
            self.received.append(data)

    def close(self) -> None:
        self.sock.close()


def _server(ca: trustme.CA) -> tuple[RecordingTLSServer, str]:
    leaf = ca.issue_cert("rbr-agent", key_type=trustme.KeyType.ECDSA)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
    server = RecordingTLSServer(context)
    server.start()
    return server, certificate_sha256(der)


@pytest.fixture
def agent_like() -> Iterator[tuple[RecordingTLSServer, str]]:
    """A server with its own certificate (from a CA no client trusts) and that cert's pin."""
    server, pin = _server(trustme.CA())
    yield server, pin
    server.close()


def record(port: int, pin: str | None) -> BucketRegistered:
    now = datetime.now(UTC)
    return BucketRegistered(
        bucket_id="b-1",
        name="agent-1",
        state=BucketState.ACTIVE,
        ip_address="127.0.0.1",
        port=port,
        token_ciphertext="unused",
        tls_cert_sha256=pin,
        registered_at=now,
        updated_at=now,
        version=1,
    )


def settings(**overrides: object) -> BucketAccessSettings:
    values: dict[str, object] = {
        "secret_key": "k",
        "bucket_timeout": 5.0,
        "bucket_scheme": "http",  # a pinned bucket is called over https all the same
        "allowed_bucket_ports": "1024-65535",  # the test servers listen on ephemeral ports
    }
    values.update(overrides)
    return BucketAccessSettings(**values)  # type: ignore[arg-type]


def sync_clients(access: BucketAccessSettings) -> BucketClients[httpx.Client]:
    return BucketClients(
        access, lambda verify: httpx.Client(verify=verify, **client_options(access))
    )


def test_the_pinned_certificate_is_accepted_without_any_ca(
    agent_like: tuple[RecordingTLSServer, str],
) -> None:
    server, pin = agent_like
    access = settings(bucket_ca_file="/nonexistent/ca.pem")  # no CA bundle needed for pins
    clients = sync_clients(access)
    bucket = record(server.port, pin)
    client = clients.for_bucket(bucket)
    assert client is not None
    url = base_url(bucket, access) + "/update_bucket"
    assert url.startswith("https://127.0.0.1:")
    response = client.get(url, headers=token_header(TOKEN))
    assert response.status_code == 200
    assert f"Authorization: Token {TOKEN}".encode() in server.received[-1]
    assert clients.for_bucket(bucket) is client  # one client (and pool) per pin
    for made in clients.made():
        made.close()


def test_another_certificate_is_refused_and_no_request_byte_is_sent(
    agent_like: tuple[RecordingTLSServer, str],
) -> None:
    server, _ = agent_like
    wrong_pin = certificate_sha256(b"some other certificate")
    access = settings()
    clients = sync_clients(access)
    bucket = record(server.port, wrong_pin)
    client = clients.for_bucket(bucket)
    assert client is not None
    with pytest.raises(httpx.ConnectError) as raised:
        client.get(base_url(bucket, access) + "/extract_logs", headers=token_header(TOKEN))
    assert "is not the one pinned" in str(raised.value)
    assert wrong_pin in str(raised.value)
    cause: BaseException | None = raised.value
    while cause is not None and not isinstance(cause, PinMismatch):
        cause = cause.__cause__ or cause.__context__
    assert isinstance(cause, PinMismatch)
    _wait_received(server, 1)  # the server thread counts the handshake before this
    assert server.handshakes == 1  # it got as far as the handshake ...
    assert server.received == [b""]  # ... and not one byte of the request, so no token
    client.close()


def test_the_async_client_checks_the_pin_too(
    agent_like: tuple[RecordingTLSServer, str],
) -> None:
    server, pin = agent_like
    access = settings()
    clients: BucketClients[httpx.AsyncClient] = BucketClients(
        access, lambda verify: httpx.AsyncClient(verify=verify, **client_options(access))
    )

    async def call(bucket: BucketRegistered) -> httpx.Response:
        client = clients.for_bucket(bucket)
        assert client is not None
        return await client.get(
            base_url(bucket, access) + "/update_bucket", headers=token_header(TOKEN)
        )

    async def scenario() -> None:
        good = await call(record(server.port, pin))
        assert good.status_code == 200
        with pytest.raises(httpx.ConnectError, match="is not the one pinned"):
            await call(record(server.port, certificate_sha256(b"impostor")))
        for made in clients.made():
            await made.aclose()

    asyncio.run(scenario())
    _wait_received(server, 2)
    assert sum(f"Token {TOKEN}".encode() in data for data in server.received) == 1
    assert b"" in server.received


def test_a_ca_verified_client_does_not_accept_a_pinned_only_certificate(
    agent_like: tuple[RecordingTLSServer, str],
) -> None:
    server, _ = agent_like
    access = settings(bucket_scheme="https")
    clients = sync_clients(access)
    bucket = record(server.port, None)  # no pin: the CA chain is verified, and fails
    client = clients.for_bucket(bucket)
    assert client is not None
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        client.get(base_url(bucket, access) + "/update_bucket", headers=token_header(TOKEN))
    _wait_received(server, 1)
    assert server.received == [b""]
    for made in clients.made():
        made.close()


def _wait_received(server: RecordingTLSServer, count: int) -> None:
    wait_for(lambda: len(server.received) >= count, message=f"{count} connection(s) recorded")
