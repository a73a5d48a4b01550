"""Server-rendered SVG charts for the admin (no JavaScript, no chart library).

Each chart is an `<svg role="img">` named by its `<title>` and described by its `<desc>` (which
states every value, for screen readers); the page shows the same figures in a table beside it.
Colours come from presentation attributes and classes in `reports.css`, so the admin's CSP
(no inline styles) holds. The charts have no words of their own: titles, series names and the word
for a missing value (`none`) come from the caller, in the reader's language.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 16, 40
_ids = itertools.count(1)


@dataclass(frozen=True)
class Series:
    """One named row of values (None: no value, e.g. a rate with nothing to divide)."""

    name: str
    values: Sequence[int | Decimal | None]
    css: str  # "s1".."s4": the series colour in reports.css


def _nice_max(value: float) -> float:
    """Return a round axis maximum at or above `value` (1, 2, 2.5 or 5 times a power of ten;
    below 20 a multiple of 4, so the four grid steps are whole numbers)."""
    if value <= 0:
        return 1.0
    if value <= 1:
        return 1.0
    if value < 20:
        return float(4 * -(-int(value + 0.999999) // 4))
    power = 10 ** len(str(int(value))) / 10
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _fmt(value: float, percent: bool) -> str:
    if percent:
        return f"{value * 100:.0f} %"
    return f"{value:,.0f}".replace(",", " ")


def _frame(title: str, desc: str, body: list[str], legend: Sequence[Series]) -> Markup:
    n = next(_ids)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart{n}-t chart{n}-d" '
        'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">',
        f'<title id="chart{n}-t">{escape(title)}</title>',
        f'<desc id="chart{n}-d">{escape(desc)}</desc>',
        *body,
    ]
    x = LEFT
    for series in legend if len(legend) > 1 else ():
        parts.append(f'<rect x="{x}" y="{HEIGHT - 14}" width="10" height="10" class="{series.css}"/>')
        parts.append(f'<text x="{x + 14}" y="{HEIGHT - 5}" class="legend">{escape(series.name)}</text>')
        x += 24 + 7 * len(series.name)
    parts.append("</svg>")
    return Markup("".join(parts))


def _axis(top: float, percent: bool) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    lines = []
    for i in range(5):
        value = top * i / 4
        y = TOP + plot_h - plot_h * i / 4
        lines.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        lines.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{_fmt(value, percent)}</text>')
    return lines


def _describe(labels: Sequence[str], series: Sequence[Series], percent: bool, none: str) -> str:
    parts = []
    for s in series:
        values = ", ".join(f"{label}: {none if v is None else _fmt(float(v), percent)}" for label, v in zip(labels, s.values))
        parts.append(f"{s.name}: {values}.")
    return " ".join(parts)


def bar_chart(title: str, labels: Sequence[str], series: Sequence[Series], *, percent: bool = False,
              none: str = "none") -> Markup:
    """Return grouped vertical bars: one group per label, one bar per series (`none`: the word for
    a missing value in the description)."""
    values = [float(v) for s in series for v in s.values if v is not None]
    top = _nice_max(max(values, default=0.0)) if not percent else max(1.0, _nice_max(max(values, default=0.0)))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    group = plot_w / max(len(labels), 1)
    bar = group * 0.8 / max(len(series), 1)
    body = _axis(top, percent)
    every = max(1, len(labels) // 8)
    for i, label in enumerate(labels):
        x0 = LEFT + i * group + group * 0.1
        for j, s in enumerate(series):
            value = s.values[i]
            if value is None:
                continue
            h = plot_h * float(value) / top
            body.append(f'<rect x="{x0 + j * bar:.1f}" y="{TOP + plot_h - h:.1f}" width="{max(bar - 1, 1):.1f}" '
                        f'height="{h:.1f}" class="{s.css}"><title>{escape(s.name)}, {escape(label)}: '
                        f'{_fmt(float(value), percent)}</title></rect>')
        if i % every == 0:
            body.append(f'<text x="{LEFT + i * group + group / 2:.1f}" y="{TOP + plot_h + 14}" class="tick" '
                        f'text-anchor="middle">{escape(label)}</text>')
    return _frame(title, _describe(labels, series, percent, none), body, series)


def line_chart(title: str, labels: Sequence[str], series: Sequence[Series], *, percent: bool = False,
               none: str = "none") -> Markup:
    """Return one line per series over the labels, with a dot at each value (`none`: as in `bar_chart`)."""
    values = [float(v) for s in series for v in s.values if v is not None]
    top = _nice_max(max(values, default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(labels) - 1, 1)
    body = _axis(top, percent)
    every = max(1, len(labels) // 8)
    for i, label in enumerate(labels):
        if i % every == 0:
            body.append(f'<text x="{LEFT + i * step:.1f}" y="{TOP + plot_h + 14}" class="tick" '
                        f'text-anchor="middle">{escape(label)}</text>')
    for s in series:
        points = [(LEFT + i * step, TOP + plot_h - plot_h * float(v) / top, label, v)
                  for i, (label, v) in enumerate(zip(labels, s.values)) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
            body.append(f'<polyline points="{path}" fill="none" class="line {s.css}"/>')
        for x, y, label, v in points:
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" class="{s.css}"><title>{escape(s.name)}, '
                        f'{escape(label)}: {_fmt(float(v), percent)}</title></circle>')
    return _frame(title, _describe(labels, series, percent, none), body, series)


def hbar_chart(title: str, labels: Sequence[str], values: Sequence[int | Decimal], *, unit: str = "") -> Markup:
    """Return one horizontal bar per label (e.g. customers per tier, revenue per campaign)."""
    top = _nice_max(max((float(v) for v in values), default=0.0))
    row = 24
    height = TOP + row * max(len(labels), 1) + 8
    # room for the longest label (tier names are the owner's, campaign names the reader's language)
    label_w = min(max(150, 12 + 7 * max((len(label) for label in labels), default=0)), 280)
    plot_w = WIDTH - label_w - RIGHT - 90
    n = next(_ids)
    desc = "; ".join(f"{label}: {v} {unit}".strip() for label, v in zip(labels, values)) + "."
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-labelledby="chart{n}-t chart{n}-d" '
        'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">',
        f'<title id="chart{n}-t">{escape(title)}</title>',
        f'<desc id="chart{n}-d">{escape(desc)}</desc>',
    ]
    for i, (label, value) in enumerate(zip(labels, values)):
        y = TOP + i * row
        w = plot_w * float(value) / top
        parts.append(f'<text x="{label_w - 8}" y="{y + 15}" class="tick" text-anchor="end">{escape(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 0):.1f}" height="{row - 8}" class="s1"/>')
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" class="tick">{escape(str(value))} {escape(unit)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
