"""The console's pure parts: hostile text made safe, chart geometry, where a login may lead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rbr_registrar.console import charts
from rbr_registrar.console.text import clean, clip
from rbr_registrar.console.web import safe_next

T0 = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[31mred\x1b[0m", "red"),
        ("\x1b]0;owned\x07title", "title"),
        ("\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("\x1bPq#0;2;0;0;0\x1b\\sixel", "sixel"),
        ("a\x00b\x08c\x7fd\x85e", "abcde"),
        ("\x9b31mcsi", "csi"),
        ("\u202eevil\u2066x\u2069", "evilx"),
        ("tab\tand\nnewline", "tab\tand\nnewline"),
        (None, ""),
        (42, "42"),
    ],
)
def test_escape_sequences_and_control_characters_are_removed(raw: object, shown: str) -> None:
    assert clean(raw) == shown


def test_long_text_is_clipped_saying_how_much() -> None:
    assert clip("x" * 10, 10) == "x" * 10
    assert clip("x" * 100_000, 2000) == "x" * 2000 + " … [98,000 more characters]"


def test_status_chart_draws_latency_and_marks_unreachable_polls() -> None:
    polls = [
        charts.Poll(T0, True, 40.0),
        charts.Poll(T0 + timedelta(minutes=5), False, None),
        charts.Poll(T0 + timedelta(minutes=10), True, 80.0),
    ]
    chart = charts.status_chart(list(reversed(polls)))  # any order: drawn in time order
    points = [tuple(map(float, p.split(","))) for p in chart.line.split()]
    assert [x for x, _ in points] == [charts.LEFT, charts.WIDTH - charts.RIGHT]
    assert points[1][1] == round(charts.TOP + charts.PLOT_HEIGHT * (1 - 80 / 100), 1)  # of 100 ms
    assert chart.y_max == "100 ms"
    assert len(chart.ticks) == 1
    assert chart.ticks[0].x == (charts.LEFT + charts.WIDTH - charts.RIGHT) / 2
    assert charts.status_chart([]).empty


def test_volume_chart_has_a_bar_per_slot_scaled_to_a_round_maximum() -> None:
    counts = [charts.Count(T0 + timedelta(hours=h), c) for h, c in enumerate([0, 30, 120])]
    chart = charts.volume_chart(counts)
    assert chart.y_max == "200"
    assert [bar.height for bar in chart.bars] == [
        0.0,
        round(charts.PLOT_HEIGHT * 30 / 200, 1),
        round(charts.PLOT_HEIGHT * 120 / 200, 1),
    ]
    assert chart.bars[2].tip == "2026-12-01 02:00: 120"


@pytest.mark.parametrize(("value", "maximum"), [(0, 1), (1, 1), (7, 10), (11, 20), (201, 500)])
def test_chart_maximum_is_round(value: float, maximum: float) -> None:
    assert charts.nice_max(value) == maximum


@pytest.mark.parametrize(
    ("target", "goes"),
    [
        ("/console/alerts?tab=firing", "/console/alerts?tab=firing"),
        ("//evil.example/console/", "/console/"),
        ("https://evil.example/", "/console/"),
        ("/console/\\evil", "/console/"),
        ("/console/\r\nSet-Cookie: x", "/console/"),
        ("/api/v1/buckets", "/console/"),
        (None, "/console/"),
    ],
)
def test_a_login_only_leads_into_the_console(target: str | None, goes: str) -> None:
    assert safe_next(target) == goes
