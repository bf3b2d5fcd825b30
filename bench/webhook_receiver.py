"""A webhook receiver in a process of its own, counting what arrives (for the notifier bench).

A real receiver never shares the notifier's interpreter: in-process, its request parsing would
take the notifier's own CPU time. It speaks HTTP/1.1 with keep-alive on loopback, answers 200
to every POST and counts requests and distinct `X-Rbr-Delivery` ids (a duplicate is a
notification sent twice).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class ReceiverProcess:
    """Starts the receiver process and reads its counts."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._requests: Synchronized[int] = context.Value("q", 0)  # type: ignore[assignment]
        self._distinct: Synchronized[int] = context.Value("q", 0)  # type: ignore[assignment]
        self._reset = context.Event()
        self._port: Synchronized[int] = context.Value("i", 0)  # type: ignore[assignment]
        self._ready = context.Event()
        self._process = context.Process(
            target=_serve,
            args=(self._port, self._ready, self._reset, self._requests, self._distinct),
            daemon=True,
            name="webhook-receiver",
        )

    def start(self) -> ReceiverProcess:
        """Starts the process; returns once it listens."""
        self._process.start()
        if not self._ready.wait(60):
            raise RuntimeError("the webhook receiver process did not start within 60 s")
        return self

    def stop(self) -> None:
        """Ends the process."""
        self._process.terminate()
        self._process.join(10)

    @property
    def url(self) -> str:
        """Returns the base URL, e.g. http://127.0.0.1:40123."""
        return f"http://127.0.0.1:{self._port.value}"

    @property
    def requests(self) -> int:
        """Returns how many requests arrived since the last `clear`."""
        return self._requests.value

    @property
    def distinct(self) -> int:
        """Returns how many distinct delivery ids arrived since the last `clear`."""
        return self._distinct.value

    def clear(self) -> None:
        """Sets the counts back to zero and forgets the delivery ids seen."""
        self._reset.set()
        deadline = time.monotonic() + 10
        while self._reset.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)

    def wait_for_requests(self, count: int, timeout: float) -> None:
        """Waits until `count` requests arrived; raises TimeoutError past `timeout`."""
        deadline = time.monotonic() + timeout
        while self.requests < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.requests} of {count} requests within {timeout:.0f}s")
            time.sleep(0.002)


def _serve(
    port: Synchronized[int],
    ready: Event,
    reset: Event,
    requests: Synchronized[int],
    distinct: Synchronized[int],
) -> None:
    asyncio.run(_main(port, ready, reset, requests, distinct))


async def _main(
    port: Synchronized[int],
    ready: Event,
    reset: Event,
    requests: Synchronized[int],
    distinct: Synchronized[int],
) -> None:
    seen: set[bytes] = set()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            headers = _headers(head)
            await reader.readexactly(int(headers.get(b"content-length", b"0")))
            if reset.is_set():
                seen.clear()
                requests.value = distinct.value = 0
                reset.clear()
            seen.add(headers.get(b"x-rbr-delivery", b""))
            requests.value += 1
            distinct.value = len(seen)
            writer.write(ANSWER)
        writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    port.value = server.sockets[0].getsockname()[1]
    ready.set()
    async with server:
        while True:
            if reset.is_set():
                seen.clear()
                requests.value = distinct.value = 0
                reset.clear()
            await asyncio.sleep(0.01)


def _headers(head: bytes) -> dict[bytes, bytes]:
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    return fields
