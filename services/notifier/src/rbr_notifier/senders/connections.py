"""Kept-alive HTTP/1.1 connections for POSTs: requests written and answers read here.

`http.client` costs about 80 µs of CPU per POST against httpx's 500 (dev machine), but most of
that is still Python around two system calls: the request head built header by header
(`putrequest`, `putheader`, validation, a list joined), a file object and an `HTTPResponse`
made per answer, the status line and headers read through them. Here the head is written in
one piece (with `http.client`'s checks: the same bytes, `tests/test_connections.py`), sent with
the body in one write, and the answer is read from the connection's own buffer as
`http.client` reads it (status line, 100 Continue, headers, chunked or sized or
to-the-close bodies, the same limits and errors). Connecting (TCP_NODELAY, TLS with SNI) is
still `http.client`'s. Connections are reused per (scheme, host, port); one the server closed
meanwhile is dropped before it is reused, never found out by a failed send.
"""

from __future__ import annotations

import http.client
import re
import select
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

MAX_IDLE_PER_HOST = 64
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100
MAX_STATUS_LINE = 65536
RECEIVE_SIZE = 65536
MAX_ANSWER_BODY = 1 << 20
"""The most of an answer's body kept (bytes). Senders read only a status and an error text;
the rest of a larger body is not read and its connection is closed, so a receiver answering
without end neither fills the notifier's memory nor turns a delivered notification into a
failed try (sent again)."""
Origin = tuple[str, str, int]
# http.client's own checks on what goes into a request head.
_ILLEGAL_TARGET = re.compile("[\x00-\x20\x7f]")
_LEGAL_HEADER_NAME = re.compile(rb"[^:\s][^:\r\n]*").fullmatch
_ILLEGAL_HEADER_VALUE = re.compile(rb"\n(?![ \t])|\r(?![ \t\n])").search


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, headers (names lower-cased) and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        """Returns the body decoded as UTF-8, undecodable bytes replaced."""
        return self.body.decode("utf-8", "replace")


@dataclass(frozen=True)
class Target:
    """Where a URL's requests go: origin, request target and Host header."""

    origin: Origin
    path: str
    host: bytes


class ConnectionPool:
    """Idle connections per origin, taken by one thread at a time (thread-safe)."""

    def __init__(
        self, timeout: float, tls: ssl.SSLContext | bool, headers: Mapping[str, str]
    ) -> None:
        """Makes an empty pool.

        Args:
            timeout: seconds for each connect, send and read.
            tls: the verifying context for https, or False to not verify certificates.
            headers: sent with every request (a request's own headers win).
        """
        self._timeout = timeout
        self._tls = tls if isinstance(tls, ssl.SSLContext) else _unverified()
        self._headers = dict(headers)
        self._idle: dict[Origin, list[Stream]] = {}
        self._lock = threading.Lock()

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        """POSTs a body and reads the whole answer.

        Raises:
            TimeoutError: a connect, send or read took longer than the timeout.
            OSError: the connection failed (refused, reset, TLS verification, ...).
            http.client.HTTPException: the server's answer was not HTTP, or the URL is not
                one to send to.
            ValueError: a header name or value that cannot be sent (a line break in it).
        """
        target = target_of(url)
        head = request_head("POST", target, {**self._headers, **headers}, len(body))
        stream = self._take(target.origin) or self._connect(target.origin)
        try:
            stream.send(head + body)
            answer, will_close = read_answer(stream, "POST")
        except BaseException:
            stream.close()
            raise
        if will_close:
            stream.close()
        else:
            self._give_back(target.origin, stream)
        return answer

    def close(self) -> None:
        """Closes every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for streams in idle.values():
            for stream in streams:
                stream.close()

    def _take(self, origin: Origin) -> Stream | None:
        while True:
            with self._lock:
                stack = self._idle.get(origin)
                if not stack:
                    return None
                stream = stack.pop()
            if not stream.closed_by_peer():
                return stream
            stream.close()

    def _give_back(self, origin: Origin, stream: Stream) -> None:
        with self._lock:
            stack = self._idle.setdefault(origin, [])
            if len(stack) < MAX_IDLE_PER_HOST:
                stack.append(stream)
                return
        stream.close()

    def _connect(self, origin: Origin) -> Stream:
        scheme, host, port = origin
        connection: http.client.HTTPConnection
        if scheme == "https":
            connection = http.client.HTTPSConnection(
                host, port, timeout=self._timeout, context=self._tls
            )
        elif scheme == "http":
            connection = http.client.HTTPConnection(host, port, timeout=self._timeout)
        else:
            raise http.client.InvalidURL(f"unsupported scheme {scheme!r}")
        connection.connect()
        assert connection.sock is not None
        return Stream(connection.sock)


class Stream:
    """A connected socket and what was received on it and not read yet."""

    __slots__ = ("_buffer", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()

    def send(self, data: bytes) -> None:
        """Sends all of data."""
        self.sock.sendall(data)

    def readline(self, limit: int) -> bytes:
        """Returns the next line with its end, at most `limit` bytes; b"" at the end."""
        searched = 0
        while True:
            end = self._buffer.find(b"\n", searched, limit)
            if end >= 0:
                return self._take(end + 1)
            if len(self._buffer) >= limit:
                return self._take(limit)
            searched = len(self._buffer)
            if not self._receive():
                return self._take(len(self._buffer))

    def read(self, size: int) -> bytes:
        """Returns the next `size` bytes, or fewer if the peer closed before."""
        while len(self._buffer) < size and self._receive():
            pass
        return self._take(min(size, len(self._buffer)))

    def read_to_end(self, limit: int) -> bytes:
        """Returns everything until the peer closes, at most `limit` bytes."""
        while len(self._buffer) < limit and self._receive():
            pass
        return self._take(min(limit, len(self._buffer)))

    def closed_by_peer(self) -> bool:
        """Tells whether an idle connection was closed (or sent something unasked) meanwhile."""
        if self._buffer:
            return True
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        """Closes the socket."""
        self.sock.close()

    def _receive(self) -> bool:
        data = self.sock.recv(RECEIVE_SIZE)
        self._buffer += data
        return bool(data)

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


@lru_cache(maxsize=256)
def target_of(url: str) -> Target:
    """Returns a URL's origin, request target and Host header (as http.client writes it).

    Raises:
        http.client.InvalidURL: a target with control characters or spaces.
    """
    parts = urlsplit(url)
    scheme, host = parts.scheme, parts.hostname or ""
    default = _default_port(scheme)
    port = parts.port or default
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if _ILLEGAL_TARGET.search(path):
        raise http.client.InvalidURL("URL can't contain control characters")
    try:
        host_bytes = host.encode("ascii")
    except UnicodeEncodeError:
        host_bytes = host.encode("idna")
    if ":" in host:  # an IPv6 address, in brackets, without its zone
        host_bytes = b"[" + host_bytes.split(b"%", 1)[0].rstrip(b"]") + b"]"
    if port != default:
        host_bytes += b":" + str(port).encode()
    return Target((scheme, host, port), path, host_bytes)


def request_head(method: str, target: Target, headers: Mapping[str, str], length: int) -> bytes:
    """Returns a request's head as `http.client`'s `request` writes it for a body of bytes.

    Host, Accept-Encoding and Content-Length first unless given (Content-Length neither when
    Transfer-Encoding is), then the headers in order.

    Raises:
        ValueError: a header name or value with a line break (or a name with a colon).
    """
    names = {name.lower() for name in headers}
    lines = [f"{method} {target.path} HTTP/1.1".encode("ascii")]
    if "host" not in names:
        lines.append(b"Host: " + target.host)
    if "accept-encoding" not in names:
        lines.append(b"Accept-Encoding: identity")
    if "content-length" not in names and "transfer-encoding" not in names:
        lines.append(b"Content-Length: " + str(length).encode())
    for name, value in headers.items():
        lines.append(_header_line(name, value))
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


def _header_line(name: str, value: str) -> bytes:
    """Returns one header line, checked as `http.client.putheader` checks it."""
    encoded_name = name.encode("ascii")
    if not _LEGAL_HEADER_NAME(encoded_name):
        raise ValueError(f"invalid header name {name!r}")
    encoded_value = value.encode("latin-1")
    if _ILLEGAL_HEADER_VALUE(encoded_value):
        # Never the value: it may be a secret (an Authorization header).
        raise ValueError(f"invalid value of header {name!r}")
    return encoded_name + b": " + encoded_value


def read_answer(stream: Stream, method: str) -> tuple[Answer, bool]:
    """Reads an answer as `http.client.HTTPResponse` reads it; returns it and whether to close.

    Raises:
        http.client.HTTPException: not HTTP, lines too long, a body shorter than announced.
        OSError: the connection failed.
    """
    while True:
        version, status = _status_line(stream)
        if status != http.client.CONTINUE:
            break
        _header_lines(stream)
    if version in ("HTTP/1.0", "HTTP/0.9"):
        http11 = False
    elif version.startswith("HTTP/1."):
        http11 = True
    else:
        raise http.client.UnknownProtocol(version)
    fields = _fields(_header_lines(stream))
    first: dict[str, str] = {}
    for name, value in fields:
        first.setdefault(name.lower(), value)
    encoding = first.get("transfer-encoding")
    chunked = bool(encoding and encoding.lower() == "chunked")
    will_close = _will_close(first, http11)
    length = None if chunked else _content_length(first.get("content-length"), chunked)
    if status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) or 100 <= status < 200:
        length = 0
    if method == "HEAD":
        length = 0
    if not will_close and not chunked and length is None:
        will_close = True
    if chunked:
        body, whole = _chunked_body(stream)
    elif length is None:
        body, whole = stream.read_to_end(MAX_ANSWER_BODY), False
    else:
        body, whole = _exactly(stream, min(length, MAX_ANSWER_BODY)), length <= MAX_ANSWER_BODY
    headers = {name.lower(): value for name, value in fields}
    return Answer(status, headers, body), will_close or not whole


def _status_line(stream: Stream) -> tuple[str, int]:
    """Reads the status line as `HTTPResponse._read_status` does; returns version and status."""
    raw = stream.readline(MAX_STATUS_LINE + 1)
    if len(raw) > MAX_STATUS_LINE:
        raise http.client.LineTooLong("status line")
    if not raw:
        raise http.client.RemoteDisconnected("Remote end closed connection without response")
    line = raw.decode("iso-8859-1")
    words = line.split(None, 2)
    version, status = (words[0], words[1]) if len(words) >= 2 else ("", "")
    if not version.startswith("HTTP/"):
        raise http.client.BadStatusLine(line)
    try:
        code = int(status)
    except ValueError:
        raise http.client.BadStatusLine(line) from None
    if code < 100 or code > 999:
        raise http.client.BadStatusLine(line)
    return version, code


def _will_close(first: Mapping[str, str], http11: bool) -> bool:
    """Tells whether the server closes after this answer (`HTTPResponse._check_close`)."""
    connection = first.get("connection")
    if http11:
        return bool(connection and "close" in connection.lower())
    if first.get("keep-alive"):
        return False
    if connection and "keep-alive" in connection.lower():
        return False
    proxy = first.get("proxy-connection")
    return not (proxy and "keep-alive" in proxy.lower())


def _chunked_body(stream: Stream) -> tuple[bytes, bool]:
    """Reads a chunked body and its trailer (`HTTPResponse._read_chunked`).

    Returns the body and whether it was read whole: reading stops once `MAX_ANSWER_BODY`
    bytes are kept.
    """
    chunks: list[bytes] = []
    kept = 0
    while True:
        raw = stream.readline(MAX_HEADER_LINE + 1)
        if len(raw) > MAX_HEADER_LINE:
            raise http.client.LineTooLong("chunk size")
        size_text = raw.split(b";", 1)[0]
        try:
            size = int(size_text, 16)
        except ValueError:
            raise http.client.IncompleteRead(b"".join(chunks)) from None
        if size == 0:
            _trailer(stream)
            return b"".join(chunks), True
        if kept + size > MAX_ANSWER_BODY:
            chunks.append(_exactly(stream, MAX_ANSWER_BODY - kept))
            return b"".join(chunks), False
        chunks.append(_exactly(stream, size))
        kept += size
        _exactly(stream, 2)  # the CRLF after the chunk


def _trailer(stream: Stream) -> None:
    while True:
        line = stream.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            raise http.client.LineTooLong("trailer line")
        if line in (b"\r\n", b"\n", b""):
            return


def _exactly(stream: Stream, size: int) -> bytes:
    data = stream.read(size)
    if len(data) < size:
        raise http.client.IncompleteRead(data, size - len(data))
    return data


def _header_lines(stream: Stream) -> list[bytes]:
    """Reads header lines up to the empty one (limits as http.client's)."""
    lines: list[bytes] = []
    while True:
        line = stream.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            return lines
        lines.append(line)
        if len(lines) > MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")


def _fields(lines: list[bytes]) -> list[tuple[str, str]]:
    """Returns header lines as (name, value) pairs; a folded line joins the one before.

    The values `http.client` gives for the same lines (`email.parser`, compat32 policy).
    """
    fields: list[list[str]] = []
    for raw in lines:
        line = raw.decode("iso-8859-1")
        if line[0] in " \t":
            if fields:
                fields[-1][1] += line
            continue
        name, colon, value = line.partition(":")
        if colon:
            fields.append([name, value.lstrip(" \t")])
    return [(name, value.rstrip("\r\n")) for name, value in fields]


def _content_length(value: str | None, chunked: bool) -> int | None:
    """Returns a usable Content-Length (ignored with chunked, unreadable or negative)."""
    if not value or chunked:
        return None
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length >= 0 else None


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _unverified() -> ssl.SSLContext:
    """Returns a TLS context that does not verify (the channel's `tls_verify: false`)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
