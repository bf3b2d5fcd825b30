"""Bucket agent figures: lines/s and MB/s served, and the agent's peak RSS, on a rotated log dir.

A rustbucket log directory of about 1 GB (quick: 100 MB) is generated in a temporary
directory: daily plain files and older days compressed with gzip, as a rotation leaves them.
One `rbr-agent` process serves it; a client pulls `/extract_logs` over the pinned TLS (the
poller's and log-extractor's pinned context) with the cursor protocol until nothing new comes,
counting lines and bytes. The agent's peak RSS is its VmHWM, read from /proc before it stops.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.figures import Figure
from rbr_runtime.buckets import pinned_tls_context, token_header

GOAL_RSS_MB = 50.0
MB = 1024 * 1024
LINE = (
    "2024-05-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{micro:06d}Z  INFO rustbucket::ssh: "
    "SSH connection from 203.0.113.{octet} port {port} user root password {micro:x} "
    "command 'uname -a; cat /proc/cpuinfo'\n"
)


def _day_lines(day: int, size: int) -> bytes:
    lines: list[str] = []
    written = 0
    index = 0
    while written < size:
        line = LINE.format(
            day=day,
            hour=(index // 3600) % 24,
            minute=(index // 60) % 60,
            second=index % 60,
            micro=index,
            octet=index % 250,
            port=1024 + index % 60000,
        )
        lines.append(line)
        written += len(line)
        index += 1
    return "".join(lines).encode()


def _generate(directory: Path, total: int) -> tuple[int, int]:
    """Writes ~`total` bytes of log content: 20 days, the first 8 compressed. (lines, bytes)"""
    days = 20
    per_day = total // days
    lines = content = 0
    for day in range(1, days + 1):
        data = _day_lines(day, per_day)
        lines += data.count(b"\n")
        content += len(data)
        path = directory / f"rustbucket.log.2024-05-{day:02d}"
        if day <= 8:
            with gzip.open(path.with_name(path.name + ".gz"), "wb", compresslevel=1) as archive:
                archive.write(data)
        else:
            path.write_bytes(data)
        stamp = time.time() - (days - day) * 86400
        target = path if day > 8 else path.with_name(path.name + ".gz")
        os.utime(target, (stamp, stamp))
    return lines, content


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def _serve_all(port: int, token: str, pin: str) -> tuple[int, int, int]:
    """Pulls until nothing new: (lines, bytes, pulls)."""
    lines = size = pulls = 0
    cursor: str | None = None
    with httpx.Client(verify=pinned_tls_context(pin), timeout=600) as client:
        while True:
            params = {"since": cursor} if cursor else None
            with client.stream(
                "GET",
                f"https://127.0.0.1:{port}/extract_logs",
                params=params,
                headers=token_header(token),
            ) as response:
                response.raise_for_status()
                got = 0
                for chunk in response.iter_raw(1024 * 1024):
                    got += len(chunk)
                    lines += chunk.count(b"\n")
                cursor = response.headers["X-Log-Cursor"]
            pulls += 1
            size += got
            if got == 0:
                return lines, size, pulls


def run(quick: bool) -> list[Figure]:
    total = (100 if quick else 1024) * MB
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        logs, state = root / "logs", root / "state"
        logs.mkdir()
        started = time.monotonic()
        expected_lines, content = _generate(logs, total)
        print(
            f"   generated {content / MB:.0f} MB of log content "
            f"({sum(p.stat().st_size for p in logs.iterdir()) / MB:.0f} MB on disk) "
            f"in {time.monotonic() - started:.0f}s",
            flush=True,
        )
        port = _free_port()
        agent = subprocess.Popen(
            [
                sys.executable, "-m", "rbr_agent", "run", "--listen", "127.0.0.1",
                "--port", str(port), "--state-dir", str(state), "--log-dir", str(logs),
                "--process-names", "", "--honeypot-ports", "", "--log-level", "WARNING",
            ],
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_serving(port)
            token = json.loads((state / "state.json").read_text())["token"]
            from rbr_agent.tls import fingerprint  # noqa: PLC0415

            pin = fingerprint(state / "cert.pem")
            started = time.monotonic()
            lines, size, pulls = _serve_all(port, token, pin)
            seconds = time.monotonic() - started
            peak_mb = _peak_rss_kb(agent.pid) / 1024
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(30)
    if lines != expected_lines or size != content:
        raise RuntimeError(
            f"served {lines} lines / {size} bytes, wrote {expected_lines} / {content}"
        )
    note = f"{content / MB:.0f} MB, {lines:,} lines, {pulls} pulls"
    return [
        Figure(
            "agent: lines/s served (rotated dir, pinned TLS)", lines / seconds, "lines/s", note=note
        ),
        Figure("agent: MB/s served", size / MB / seconds, "MB/s"),
        Figure(
            "agent: peak RSS serving the directory",
            peak_mb,
            "MB",
            goal=f"<= {GOAL_RSS_MB:.0f} MB",
            met=peak_mb <= GOAL_RSS_MB,
        ),
    ]


def _wait_serving(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"https://127.0.0.1:{port}/healthz", verify=False).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the agent did not start")
