"""A measured figure and its goal."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One measurement, e.g. parser lines per second, with the goal it is held to."""

    name: str
    value: float
    unit: str
    goal: str = ""
    met: bool | None = None
    note: str = ""

    def line(self) -> str:
        """Returns the figure as one printable line."""
        verdict = {True: "meets", False: "MISSES", None: ""}[self.met]
        goal = f"  goal {self.goal} {verdict}" if self.goal else ""
        note = f"  ({self.note})" if self.note else ""
        digits = 2 if abs(self.value) < 10 else 1  # ratios: 0.42, not 0.4
        return f"{self.name:<55} {self.value:>12,.{digits}f} {self.unit:<10}{goal}{note}"
