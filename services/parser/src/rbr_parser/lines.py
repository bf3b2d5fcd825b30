"""Reading a byte stream as lines, with bounded memory whatever the input.

A raw log object can be gigabytes, and an attacker can make one line of it as long as they
like. Lines are yielded with their first `max_bytes` bytes and their true size, so nothing
ever holds more than one capped line and one chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the stream.

    Attributes:
        data: the line's bytes without its newline, cut to the reader's limit.
        size: the line's true size in bytes, newline included.
    """

    data: bytes
    size: int


def iter_lines(chunks: Iterable[bytes], max_bytes: int) -> Iterator[Line]:
    """Splits a stream of chunks into lines on newline bytes.

    Args:
        chunks: the stream, in pieces of any size.
        max_bytes: the most bytes of one line kept; the rest is counted, not kept.

    Yields:
        Every line, the last one even without a final newline.
    """
    pending = bytearray()
    overflow = 0
    for chunk in chunks:
        if not chunk:
            continue
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            if pending or overflow:
                size = len(pending) + overflow + (end - start) + 1
                yield Line(_joined(pending, chunk, start, end, max_bytes), size)
                pending.clear()
                overflow = 0
            else:
                length = end - start
                data = chunk[start : start + max_bytes] if length > max_bytes else chunk[start:end]
                yield Line(data, length + 1)
            start = end + 1
        if start < len(chunk):
            overflow += _keep(pending, chunk, start, len(chunk), max_bytes)
    if pending or overflow:
        yield Line(bytes(pending), len(pending) + overflow)


def _joined(pending: bytearray, chunk: bytes, start: int, end: int, max_bytes: int) -> bytes:
    """Returns pending + chunk[start:end], cut to max_bytes."""
    room = max(0, max_bytes - len(pending))
    return bytes(pending) + chunk[start : min(end, start + room)]


def _keep(pending: bytearray, chunk: bytes, start: int, end: int, max_bytes: int) -> int:
    """Adds chunk[start:end] to pending up to max_bytes; returns how many bytes were dropped."""
    room = max(0, max_bytes - len(pending))
    taken = min(room, end - start)
    pending += chunk[start : start + taken]
    return (end - start) - taken
