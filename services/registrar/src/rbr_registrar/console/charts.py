"""Chart geometry for inline SVG drawn on the server (no script; colours from the CSS).

These functions only compute coordinates and labels; `templates/_chart.html` draws them,
escaped like everything else on a page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

WIDTH = 640
HEIGHT = 160
LEFT = 56
RIGHT = 8
TOP = 10
BOTTOM = 24
PLOT_WIDTH = WIDTH - LEFT - RIGHT
PLOT_HEIGHT = HEIGHT - TOP - BOTTOM
TICK_HEIGHT = 10


@dataclass(frozen=True)
class Poll:
    """One poll outcome to chart."""

    at: datetime
    reachable: bool
    latency_ms: float | None


@dataclass(frozen=True)
class Count:
    """A count in a time slot (e.g. log records in an hour)."""

    start: datetime
    count: int


@dataclass(frozen=True)
class Bar:
    """A bar: its box and its tooltip."""

    x: float
    y: float
    width: float
    height: float
    tip: str


@dataclass(frozen=True)
class Tick:
    """A mark along the bottom (an unreachable poll) and its tooltip."""

    x: float
    tip: str


@dataclass(frozen=True)
class Chart:
    """What the template draws: frame labels, and bars, a line or ticks."""

    label: str
    y_max: str = ""
    first: str = ""
    last: str = ""
    bars: list[Bar] = field(default_factory=list)
    line: str = ""
    ticks: list[Tick] = field(default_factory=list)
    empty: bool = False
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right_edge: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM


def nice_max(value: float) -> float:
    """Rounds a maximum up to 1, 2 or 5 times a power of ten (at least 1)."""
    if value <= 1:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def _stamp(at: datetime) -> str:
    return f"{at:%m-%d %H:%M}"


def status_chart(polls: Sequence[Poll], label: str = "poll latency (ms)") -> Chart:
    """Returns latency over time as a line, unreachable polls as ticks along the bottom."""
    if not polls:
        return Chart(label=label, empty=True)
    ordered = sorted(polls, key=lambda poll: poll.at)
    first, last = ordered[0].at, ordered[-1].at
    span = max((last - first).total_seconds(), 1.0)
    latencies = [p.latency_ms for p in ordered if p.reachable and p.latency_ms is not None]
    top = nice_max(max(latencies, default=0.0))

    def x(at: datetime) -> float:
        return round(LEFT + PLOT_WIDTH * (at - first).total_seconds() / span, 1)

    points = [
        f"{x(p.at)},{round(TOP + PLOT_HEIGHT * (1 - min(p.latency_ms, top) / top), 1)}"
        for p in ordered
        if p.reachable and p.latency_ms is not None
    ]
    ticks = [
        Tick(x(p.at), f"{p.at:%Y-%m-%d %H:%M:%S} unreachable") for p in ordered if not p.reachable
    ]
    return Chart(
        label=label,
        y_max=f"{top:g} ms",
        first=_stamp(first),
        last=_stamp(last),
        line=" ".join(points),
        ticks=ticks,
    )


def volume_chart(counts: Sequence[Count], label: str = "log records per hour") -> Chart:
    """Returns counts per time slot as bars, each with its count as a tooltip."""
    if not counts:
        return Chart(label=label, empty=True)
    ordered = sorted(counts, key=lambda c: c.start)
    top = nice_max(max(c.count for c in ordered))
    slot = PLOT_WIDTH / len(ordered)
    bars = []
    for index, item in enumerate(ordered):
        height = round(PLOT_HEIGHT * item.count / top, 1)
        bars.append(
            Bar(
                x=round(LEFT + index * slot + slot * 0.1, 1),
                y=round(TOP + PLOT_HEIGHT - height, 1),
                width=round(max(slot * 0.8, 1.0), 1),
                height=height,
                tip=f"{item.start:%Y-%m-%d %H:%M}: {item.count:,}",
            )
        )
    return Chart(
        label=label,
        y_max=f"{top:,.0f}",
        first=_stamp(ordered[0].start),
        last=_stamp(ordered[-1].start),
        bars=bars,
    )
