"""Inline SVG charts for the HTML report: grouped bars, lines, and intervals (a forest plot).

Nothing may be drawn past the canvas. Every label is placed from an estimate of its width
(:func:`text_width`: 0.6 of the font size per character, East Asian wide characters double):
long labels are shortened with an ellipsis (the full text stays in a ``<title>`` tooltip),
legends wrap onto more rows, bars leave room for their value labels, and a centred label is
pulled back inside. tests/reports/test_svg_geometry.py parses every chart and checks each
text's extent against the viewBox; tests/reports/test_html_browser.py measures it in Chromium.

Units (``Chart.unit``): ``count``; ``percent`` (a rate, 0.12 -> 12.0%); ``pp`` (a difference
of two rates in percentage points, 0.088 -> +8.8 pp), as the tables write them.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from html import escape

from engine.reports.common import Chart

PALETTE = ["#2f6db5", "#e07b39", "#3a9a5b", "#b8434e", "#7c5cb5", "#8a8a8a", "#c9a227"]
FONT_SIZE = 11  # px; the <svg> sets it, so the estimate and the drawing agree
WIDTH = 560
MARGIN = 6  # kept free at every edge
LABEL_COLUMN_MAX = 200  # the widest row-label column before labels are shortened
LEGEND_ROW = 16
ELLIPSIS = "…"


def text_width(text: str, size: float = FONT_SIZE) -> float:
    """Estimated width of ``text`` in px: 0.6 em per character, wide (CJK) characters 1.2 em."""
    units = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return units * 0.6 * size


def shorten(text: str, width: float) -> str:
    """``text``, cut with an ellipsis so that it fits ``width`` px."""
    if text_width(text) <= width:
        return text
    while text and text_width(text + ELLIPSIS) > width:
        text = text[:-1]
    return text + ELLIPSIS


def fmt(value: float, unit: str) -> str:
    if unit == "percent":
        return f"{value * 100:.1f}%"
    if unit == "pp":
        return f"{value * 100:+.1f} pp"
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:g}"


def svg(chart: Chart) -> str:
    if chart.kind == "bars":
        return _bars(chart)
    if chart.kind == "lines":
        return _lines(chart)
    if chart.kind == "intervals":
        return _intervals(chart)
    raise ValueError(f"unknown chart kind {chart.kind!r}")


def _open(kind: str, height: float) -> str:
    return (
        f'<svg class="chart chart-{kind}" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{height:.0f}" viewBox="0 0 {WIDTH} {height:.0f}" role="img" '
        f'font-size="{FONT_SIZE}">'
    )


def _label(x: float, y: float, text: str, width: float, anchor: str = "start") -> str:
    """A text shortened to ``width`` px; the full text in a tooltip when it was cut."""
    shown = shorten(text, width)
    tip = f"<title>{escape(text)}</title>" if shown != text else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{tip}{escape(shown)}</text>'


def _legend(names: Sequence[str], x0: float, y0: float) -> tuple[list[str], float]:
    """Colour keys from (x0, y0), wrapping onto a new row at the right edge: (parts, height)."""
    right = WIDTH - MARGIN
    parts, x, y = [], x0, y0
    for i, name in enumerate(names):
        shown = shorten(name, right - x0 - 14)
        item = 14 + text_width(shown)
        if x > x0 and x + item > right:
            x, y = x0, y + LEGEND_ROW
        parts.append(
            f'<rect class="legend" x="{x:.1f}" y="{y:.1f}" width="10" height="10" '
            f'fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text class="legend" x="{x + 14:.1f}" y="{y + 9:.1f}">{escape(shown)}</text>'
        )
        x += item + 12
    return parts, (y - y0 + LEGEND_ROW) if names else 0.0


def _label_column(labels: Sequence[str]) -> float:
    """Width of the row-label column: the widest label, at most LABEL_COLUMN_MAX."""
    return min(max([0.0, *(text_width(label) for label in labels)]), LABEL_COLUMN_MAX)


def _bars(chart: Chart) -> str:
    """Grouped horizontal bars: one group per label, one bar per series it has values for.
    ``chart.markers`` (name -> value) draw a dashed vertical line each, e.g. a ceiling."""
    data: dict[str, dict[str, float]] = chart.data
    series: list[str] = []
    for values in data.values():
        series.extend(s for s in values if s not in series)
    bar_h = 12
    column = _label_column(list(data))
    left = MARGIN + column + 8
    legend, legend_h = _legend(series, left, MARGIN)
    marker_row = 16 if chart.markers else 0
    top = MARGIN + legend_h + marker_row + 4
    amounts = [v for row in data.values() for v in row.values()]
    value_room = max([0.0, *(text_width(fmt(v, chart.unit)) for v in amounts)]) + 4
    peak = max([1.0, *amounts, *chart.markers.values()])
    plot_right = WIDTH - MARGIN - value_room
    scale = (plot_right - left) / peak
    group_heights = [bar_h * len(row) + 10 for row in data.values()]
    height = top + sum(group_heights) + 6
    out = [_open("bars", height), *legend]
    y = top
    for (label, row), group_h in zip(data.items(), group_heights, strict=True):
        out.append(_label(MARGIN, y + group_h / 2 + 4, label, column))
        for slot, name in enumerate(s for s in series if s in row):
            value = row[name]
            colour = PALETTE[series.index(name) % len(PALETTE)]
            w = max(value * scale, 0.5 if value else 0)
            by = y + slot * bar_h
            shown = fmt(value, chart.unit)
            out.append(
                f'<rect class="bar" data-series="{escape(name)}" data-value="{value:g}" '
                f'x="{left:.1f}" y="{by:.1f}" width="{w:.1f}" height="{bar_h - 2}" '
                f'fill="{colour}"><title>{escape(label)} {escape(name)}: {shown}</title></rect>'
                f'<text class="value" x="{left + w + 4:.1f}" y="{by + bar_h - 3:.1f}">'
                f"{shown}</text>"
            )
        y += group_h
    for name, value in chart.markers.items():
        x = left + value * scale
        out.append(
            f'<line class="marker" data-value="{value:g}" x1="{x:.1f}" y1="{top - 4:.1f}" '
            f'x2="{x:.1f}" y2="{height - 4:.1f}" stroke="#b8434e" stroke-width="1.5" '
            f'stroke-dasharray="5 3"><title>{escape(name)}</title></line>'
        )
        text_y = top - 7
        if x + 4 + text_width(name) <= WIDTH - MARGIN:
            out.append(_label(x + 4, text_y, name, WIDTH - MARGIN - x - 4))
        else:
            out.append(_label(x - 4, text_y, name, x - 4 - MARGIN, anchor="end"))
    out.append("</svg>")
    return "".join(out)


def _lines(chart: Chart) -> str:
    data: dict[str, list[tuple[float, float]]] = chart.data
    points = [p for values in data.values() for p in values]
    max_x = max([1.0, *(p[0] for p in points)])
    max_y = max([1e-9, *(p[1] for p in points)]) * 1.1
    ticks = [max_y * tick / 4 for tick in range(5)]
    left = MARGIN + max(text_width(fmt(t, chart.unit)) for t in ticks) + 6
    right, bottom = MARGIN + 4, 36
    legend, legend_h = _legend(list(data), left, MARGIN)
    top = MARGIN + legend_h + 8
    height = top + 200 + bottom
    sx = (WIDTH - left - right) / max_x
    sy = (height - top - bottom) / max_y
    base = height - bottom

    def xy(x: float, y: float) -> str:
        return f"{left + x * sx:.1f},{base - y * sy:.1f}"

    out = [
        _open("lines", height),
        *legend,
        f'<line class="axis" x1="{left:.1f}" y1="{base:.1f}" x2="{WIDTH - right}" '
        f'y2="{base:.1f}" stroke="#999"/>',
        f'<line class="axis" x1="{left:.1f}" y1="{top:.1f}" x2="{left:.1f}" y2="{base:.1f}" '
        f'stroke="#999"/>',
        _label(WIDTH / 2, height - 6, chart.x_label, WIDTH - 2 * MARGIN, "middle"),
    ]
    for value in ticks:
        y = base - value * sy
        out.append(
            f'<text x="{left - 6:.1f}" y="{y + 4:.1f}" text-anchor="end">'
            f"{fmt(value, chart.unit)}</text>"
            f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{WIDTH - right}" y2="{y:.1f}" '
            f'stroke="#eee"/>'
        )
    out.append(f'<text x="{left:.1f}" y="{base + 14:.1f}" text-anchor="middle">0</text>')
    out.append(f'<text x="{WIDTH - right}" y="{base + 14:.1f}" text-anchor="end">{max_x:g}</text>')
    for i, (name, values) in enumerate(data.items()):
        path = " ".join(xy(x, y) for x, y in values)
        out.append(
            f'<polyline class="series" data-series="{escape(name)}" fill="none" '
            f'stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="2" points="{path}"/>'
        )
    out.append("</svg>")
    return "".join(out)


def _intervals(chart: Chart) -> str:
    """A forest plot: each estimate as a dot on its interval, with the zero line."""
    data: dict[str, tuple[float, float, float]] = chart.data
    row, top, right = 34, 36, MARGIN + 4
    column = _label_column(list(data))
    left = MARGIN + column + 12
    height = top + row * len(data) + 24
    low = min([0.0, *(v[1] for v in data.values())])
    high = max([0.0, *(v[2] for v in data.values())])
    if math.isclose(low, high):
        high = low + 1
    pad = (high - low) * 0.05
    low, high = low - pad, high + pad
    scale = (WIDTH - left - right) / (high - low)

    def x(value: float) -> float:
        return left + (value - low) * scale

    zero = x(0)
    axis_y = height - 8
    out = [
        _open("intervals", height),
        f'<line class="zero" x1="{zero:.1f}" y1="10" x2="{zero:.1f}" y2="{height - 24}" '
        f'stroke="#999" stroke-dasharray="4 3"/>',
        f'<text x="{zero:.1f}" y="{axis_y}" text-anchor="middle">0</text>',
    ]
    # The ends of the axis, where they do not run into the 0 label.
    low_text, high_text = fmt(low, chart.unit), fmt(high, chart.unit)
    if zero - left > text_width(low_text) + 12:
        out.append(f'<text x="{left:.1f}" y="{axis_y}">{low_text}</text>')
    if WIDTH - right - zero > text_width(high_text) + 12:
        out.append(f'<text x="{WIDTH - right}" y="{axis_y}" text-anchor="end">{high_text}</text>')
    y = top
    for i, (label, (estimate, lo, hi)) in enumerate(data.items()):
        colour = PALETTE[i % len(PALETTE)]
        shown = f"{fmt(estimate, chart.unit)} [{fmt(lo, chart.unit)}, {fmt(hi, chart.unit)}]"
        half = text_width(shown) / 2
        centre = min(max(x(estimate), left + half), WIDTH - right - half)
        out.append(
            _label(MARGIN, y + 4, label, column)
            + f'<line class="interval" x1="{x(lo):.1f}" y1="{y}" x2="{x(hi):.1f}" y2="{y}" '
            f'stroke="{colour}" stroke-width="3"/>'
            f'<circle class="estimate" cx="{x(estimate):.1f}" cy="{y}" r="5" fill="{colour}">'
            f"<title>{escape(label)}: {shown}</title></circle>"
            f'<text x="{centre:.1f}" y="{y - 8}" text-anchor="middle">{shown}</text>'
        )
        y += row
    out.append("</svg>")
    return "".join(out)
