"""Self-reported metrics of a simulated bucket that change on every poll."""

from __future__ import annotations

import random
import time


class MetricsWalk:
    """Random walks for CPU, memory and connections, a slowly growing disk and real uptime.

    Every sample moves CPU, memory and connections by a non-zero step, so two consecutive
    polls never report the same CPU figure.
    """

    def __init__(self, rng: random.Random) -> None:
        """Starts the walks at plausible values.

        Args:
            rng: Source of randomness (the bucket's seeded generator).
        """
        self._rng = rng
        self._cpu = rng.randint(3, 40)
        self._memory_mb = rng.randint(180, 900)
        self._disk_mb = rng.randint(8_000, 40_000)
        self._connections = rng.randint(0, 20)
        # Pretend the honeypot booted a while before the simulator started.
        self._booted = time.monotonic() - rng.randint(3_600, 30 * 86_400)

    def sample(self, logged_bytes: int = 0) -> dict[str, str]:
        """Returns the next metrics, formatted like the real honeypot reports them.

        Args:
            logged_bytes: Log bytes written so far; they fill the disk.
        """
        self._cpu = _step(self._rng, self._cpu, 1, 99, 9)
        self._memory_mb = _step(self._rng, self._memory_mb, 64, 3_900, 48)
        self._connections = _step(self._rng, self._connections, 0, 400, 4)
        disk_gb = (self._disk_mb + logged_bytes // 1_000_000) // 1_000
        return {
            "cpu_usage": f"{self._cpu}%",
            "memory_usage": f"{self._memory_mb}MB",
            "disk_space": f"{disk_gb}GB",
            "uptime": str(int(time.monotonic() - self._booted)),
            "connections": str(self._connections),
        }


def _step(rng: random.Random, value: int, low: int, high: int, max_step: int) -> int:
    delta = rng.randint(1, max_step) * rng.choice((-1, 1))
    moved = value + delta
    # Reflect at the bounds instead of clamping, so the value always changes.
    if moved < low or moved > high:
        moved = value - delta
    return moved
