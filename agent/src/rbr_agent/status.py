"""`GET /update_bucket`: the host's and the honeypot's health, in the registry's answer shape.

The registry's fields as short text, plus the agent's own (version, uptime, the honeypot's
process and ports, log files, disk); `degraded: <why>` when the honeypot is not all there.
Read from /proc; the honeypot's ports are never connected to (that would log an attacker).
"""

from __future__ import annotations

import os
import platform
import shutil
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rbr_agent import __version__, logdir

MAX_FIELD = 255
PROC = Path("/proc")
_LISTEN, _ESTABLISHED = "0A", "01"


@dataclass(frozen=True)
class WatchSettings:
    """What the agent watches of the honeypot."""

    name: str
    ip_address: str
    log_dir: Path
    patterns: tuple[str, ...]
    process_names: tuple[str, ...]
    ports: tuple[int, ...]
    pid_file: Path | None = None


def operating_system() -> str:
    """Returns the operating system the way rustbucket reports it, e.g. `linux (x86_64)`."""
    return f"{platform.system().lower()} ({platform.machine()})"


def clean(text: str) -> str:
    """Returns text the registry accepts: no control characters, at most 255 characters."""
    return "".join("?" if unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in text)[
        :MAX_FIELD
    ]


def human_bytes(count: float) -> str:
    """Returns a byte count for people, e.g. `12.3 GiB`."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """Returns a duration for people, e.g. `3d 4h 5m`."""
    minutes = int(seconds) // 60
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return f"{days}d {hours}h {minutes}m" if days else f"{hours}h {minutes}m"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def host_uptime() -> float | None:
    """Returns the host's uptime in seconds (None where /proc/uptime is missing)."""
    text = _read(PROC / "uptime")
    return float(text.split()[0]) if text else None


def memory_usage() -> str | None:
    """Returns e.g. `1.2 GiB used of 3.8 GiB (31%)` from /proc/meminfo."""
    text = _read(PROC / "meminfo")
    if text is None:
        return None
    values = {
        line.split(":")[0]: int(line.split()[1]) * 1024
        for line in text.splitlines()
        if line.count(":") == 1 and len(line.split()) >= 2 and line.split()[1].isdigit()
    }
    total, available = values.get("MemTotal"), values.get("MemAvailable")
    if not total or available is None:
        return None
    used = total - available
    return f"{human_bytes(used)} used of {human_bytes(total)} ({used * 100 // total}%)"


def running_processes(names: tuple[str, ...]) -> list[int]:
    """Returns the ids of the processes whose command name is one of `names`."""
    if not names:
        return []
    found: list[int] = []
    try:
        entries = list(PROC.iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit():
            continue
        command = _read(entry / "comm")
        if command is not None and command.strip() in names:
            found.append(int(entry.name))
    return sorted(found)


def pid_file_alive(path: Path) -> bool:
    """Tells whether the process named in a pid file exists."""
    text = _read(path)
    if text is None or not text.strip().isdigit():
        return False
    return (PROC / text.strip()).exists()


def tcp_sockets() -> list[tuple[int, str]]:
    """Returns (local port, state) of every TCP socket of this network namespace."""
    sockets: list[tuple[int, str]] = []
    for table in ("tcp", "tcp6"):
        text = _read(PROC / "net" / table)
        for line in (text or "").splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and ":" in fields[1]:
                sockets.append((int(fields[1].rsplit(":", 1)[1], 16), fields[3]))
    return sockets


class StatusReporter:
    """Answers `/update_bucket` from what it sees now."""

    def __init__(self, settings: WatchSettings, clock: Callable[[], float] = time.monotonic):
        """Remembers the settings and when the agent started."""
        self.settings = settings
        self._clock = clock
        self._started = clock()

    def answer(self) -> dict[str, Any]:
        """Returns the `/update_bucket` answer."""
        settings = self.settings
        problems: list[str] = []
        entry: dict[str, str] = {
            "name": settings.name,
            "ip_address": settings.ip_address,
            "operating_system": operating_system(),
            "agent_version": __version__,
            "agent_uptime": human_duration(self._clock() - self._started),
        }
        uptime = host_uptime()
        if uptime is not None:
            entry["uptime"] = human_duration(uptime)
        if hasattr(os, "getloadavg"):
            entry["cpu_usage"] = "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
        memory = memory_usage()
        if memory is not None:
            entry["memory_usage"] = memory
        self._disk(entry, problems)
        self._process(entry, problems)
        self._ports(entry, problems)
        status = "ok" if not problems else "degraded: " + "; ".join(problems)
        return {
            "status": clean(status),
            "updates": [{key: clean(value) for key, value in entry.items()}],
        }

    def _disk(self, entry: dict[str, str], problems: list[str]) -> None:
        settings = self.settings
        try:
            files = logdir.scan(settings.log_dir, settings.patterns)
            usage = shutil.disk_usage(settings.log_dir)
        except OSError as error:
            problems.append(f"log directory unreadable ({type(error).__name__})")
            return
        entry["log_files"] = str(len(files))
        entry["log_dir_bytes"] = str(logdir.directory_bytes(files))
        entry["disk_free_bytes"] = str(usage.free)
        entry["disk_space"] = f"{human_bytes(usage.free)} free of {human_bytes(usage.total)}"

    def _process(self, entry: dict[str, str], problems: list[str]) -> None:
        settings = self.settings
        if settings.pid_file is not None:
            alive = pid_file_alive(settings.pid_file)
            entry["honeypot_process"] = "running" if alive else "not running"
        elif settings.process_names:
            if not (PROC / "self").exists():
                entry["honeypot_process"] = "unknown (no /proc)"
                return
            pids = running_processes(settings.process_names)
            alive = bool(pids)
            listed = " ".join(str(p) for p in pids[:5])
            entry["honeypot_process"] = f"running (pid {listed})" if alive else "not running"
        else:
            return
        if not alive:
            problems.append("honeypot process not running")

    def _ports(self, entry: dict[str, str], problems: list[str]) -> None:
        ports = self.settings.ports
        if not ports:
            return
        sockets = tcp_sockets()
        if not sockets:
            entry["honeypot_ports"] = "unknown (no /proc/net/tcp)"
            return
        listening = {port for port, state in sockets if state == _LISTEN}
        missing = [port for port in ports if port not in listening]
        connections = sum(1 for port, state in sockets if state == _ESTABLISHED and port in ports)
        entry["connections"] = str(connections)
        entry["honeypot_ports"] = " ".join(
            f"{port}:{'listening' if port in listening else 'closed'}" for port in ports
        )
        if missing:
            problems.append("not listening on " + ", ".join(str(p) for p in missing))
