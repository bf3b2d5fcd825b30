"""Kept-alive HTTP/1.1 connections for POSTs, on the standard library's `http.client`.

A POST through them costs about a fifth of the CPU time of one through httpx (measured: 80
against 500 µs on the dev machine), which is most of what a delivery costs the notifier.
Connections are reused per (scheme, host, port); one the server closed meanwhile is dropped
before it is reused, never found out by a failed send.
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_IDLE_PER_HOST = 64
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100
Origin = tuple[str, str, int]


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
        self._idle: dict[Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        """POSTs a body and reads the whole answer.

        Raises:
            TimeoutError: a connect, send or read took longer than the timeout.
            OSError: the connection failed (refused, reset, TLS verification, ...).
            http.client.HTTPException: the server's answer was not HTTP.
        """
        parts = urlsplit(url)
        origin = (parts.scheme, parts.hostname or "", parts.port or _default_port(parts.scheme))
        connection = self._take(origin) or self._connect(origin)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request("POST", target, body=body, headers={**self._headers, **headers})
            response = connection.getresponse()
            content = response.read()
        except BaseException:
            connection.close()
            raise
        if response.will_close:
            connection.close()
        else:
            self._give_back(origin, connection)
        answer_headers = {name.lower(): value for name, value in response.getheaders()}
        return Answer(response.status, answer_headers, content)

    def close(self) -> None:
        """Closes every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def _take(self, origin: Origin) -> http.client.HTTPConnection | None:
        while True:
            with self._lock:
                stack = self._idle.get(origin)
                if not stack:
                    return None
                connection = stack.pop()
            if not _closed_by_peer(connection):
                return connection
            connection.close()

    def _give_back(self, origin: Origin, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            stack = self._idle.setdefault(origin, [])
            if len(stack) < MAX_IDLE_PER_HOST:
                stack.append(connection)
                return
        connection.close()

    def _connect(self, origin: Origin) -> http.client.HTTPConnection:
        scheme, host, port = origin
        connection: http.client.HTTPConnection
        if scheme == "https":
            connection = _HTTPSConnection(host, port, timeout=self._timeout, context=self._tls)
        elif scheme == "http":
            connection = _HTTPConnection(host, port, timeout=self._timeout)
        else:
            raise http.client.InvalidURL(f"unsupported scheme {scheme!r}")
        connection.response_class = Response
        return connection


class _OneWrite(http.client.HTTPConnection):
    """Sends a request's head and body in one write rather than two.

    `http.client` writes the head, then the body: with TCP_NODELAY (which it sets) that is two
    system calls and two segments, each waking the receiver. Only the public `request` and
    `send` are overridden: within a request the head is held until the body comes.
    """

    _holding = False
    _head: bytes | None = None

    def request(self, *args: Any, **kwargs: Any) -> None:
        """Sends a request as `HTTPConnection.request` does, its head and body together."""
        self._holding, self._head = True, None
        try:
            super().request(*args, **kwargs)
        finally:
            head = self._release()
        if head is not None:  # no body followed it
            super().send(head)

    def _release(self) -> bytes | None:
        """Stops holding; returns the head still held, if any."""
        head, self._head, self._holding = self._head, None, False
        return head

    def send(self, data: Any) -> None:
        """Sends data; the head of a request waits for its body."""
        if self._holding and isinstance(data, bytes):
            if self._head is None:
                self._head = data
                return
            data, self._head, self._holding = self._head + data, None, False
        super().send(data)


class _HTTPConnection(_OneWrite, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_OneWrite, http.client.HTTPSConnection):
    pass


class Response(http.client.HTTPResponse):
    """An answer whose header lines are read without the email package.

    `http.client` parses an answer's headers with `email.parser`, about 40 µs of CPU per
    answer, a tenth of what a delivery costs the notifier; splitting the lines takes a few.
    `begin` is the standard library's (3.11 to 3.13), with that one step replaced.
    """

    def begin(self) -> None:
        """Reads the status line and the headers; sets how the body is framed."""
        if getattr(self, "headers", None) is not None:  # begun already
            return
        while True:
            version, status, reason = self._read_status()  # type: ignore[attr-defined]
            if status != http.client.CONTINUE:
                break
            _header_lines(self.fp)
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = _message(_header_lines(self.fp))
        encoding = self.headers.get("transfer-encoding")
        self.chunked = bool(encoding and encoding.lower() == "chunked")
        if self.chunked:
            self.chunk_left = None
        self.will_close = self._check_close()  # type: ignore[attr-defined]
        self.length = _content_length(self.headers.get("content-length"), self.chunked)
        if status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) or 100 <= status < 200:
            self.length = 0
        if self._method == "HEAD":  # type: ignore[attr-defined]
            self.length = 0
        # Kept open, neither chunked nor of a given length: the body ends when it closes.
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


def _header_lines(fp: Any) -> list[bytes]:
    """Reads header lines up to the empty one (limits as http.client's)."""
    lines: list[bytes] = []
    while True:
        line = fp.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            return lines
        lines.append(line)
        if len(lines) > MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")


def _message(lines: list[bytes]) -> http.client.HTTPMessage:
    """Returns the header lines as http.client's message; a folded line joins the one before."""
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
    message = http.client.HTTPMessage()
    for name, value in fields:
        message[name] = value.rstrip("\r\n")
    return message


def _content_length(value: str | None, chunked: bool) -> int | None:
    """Returns a usable Content-Length (ignored with chunked, unreadable or negative)."""
    if not value or chunked:
        return None
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length >= 0 else None


def _closed_by_peer(connection: http.client.HTTPConnection) -> bool:
    """Tells whether an idle connection was closed (or sent something unasked) meanwhile."""
    if connection.sock is None:
        return True
    readable, _, _ = select.select([connection.sock], [], [], 0)
    return bool(readable)


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _unverified() -> ssl.SSLContext:
    """Returns a TLS context that does not verify (the channel's `tls_verify: false`)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
