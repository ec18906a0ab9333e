"""Renderers shared by every report: CSV text and one self-contained HTML file with inline SVG
charts (no script, no stylesheet or font from the network: it opens anywhere, offline).

A report object offers ``tables() -> list[Table]`` and ``charts() -> list[Chart]``; the
terminal table and --json live in the CLI.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from html import escape
from typing import Any

from engine.csv_safe import SafeWriter
from engine.reports.common import Chart, Table

PALETTE = ["#2f6db5", "#e07b39", "#3a9a5b", "#b8434e", "#7c5cb5", "#8a8a8a", "#c9a227"]


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def to_csv(tables: Sequence[Table]) -> str:
    """Each table as a block: its title, its header, its rows, then an empty line."""
    out = io.StringIO()
    writer = SafeWriter(out, lineterminator="\n")
    for table in tables:
        writer.writerow([table.title])
        writer.writerow(list(table.columns))
        for row in table.rows:
            writer.writerow([cell(v) for v in row])
        writer.writerow([])
    return out.getvalue()


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:2rem;color:#222;max-width:1200px}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}
th{background:#f3f5f8}td:first-child,th:first-child{text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem}
figure{margin:0}figcaption{font-weight:600;margin-bottom:.25rem}
.meta{color:#666;font-size:.85rem}svg text{font-size:11px;fill:#333}
"""


def to_html(title: str, tables: Sequence[Table], charts: Sequence[Chart], *, meta: str) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">{escape(meta)}</p>',
        '<section class="charts">',
    ]
    for index, chart in enumerate(charts):
        parts.append(
            f'<figure id="chart-{index}" data-kind="{chart.kind}">'
            f"<figcaption>{escape(chart.title)}</figcaption>{svg(chart)}</figure>"
        )
    parts.append("</section>")
    for table in tables:
        parts.append(f"<h2>{escape(table.title)}</h2>")
        if table.note:
            parts.append(f"<p>{escape(table.note)}</p>")
        parts.append("<table><thead><tr>")
        parts.extend(f"<th>{escape(str(c))}</th>" for c in table.columns)
        parts.append("</tr></thead><tbody>")
        if not table.rows:
            parts.append(f'<tr><td colspan="{len(table.columns)}">(none)</td></tr>')
        for row in table.rows:
            parts.append("<tr>" + "".join(f"<td>{escape(cell(v))}</td>" for v in row) + "</tr>")
        parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def svg(chart: Chart) -> str:
    if chart.kind == "bars":
        return _bars(chart)
    if chart.kind == "lines":
        return _lines(chart)
    if chart.kind == "intervals":
        return _intervals(chart)
    raise ValueError(f"unknown chart kind {chart.kind!r}")


def _fmt(value: float, percent: bool) -> str:
    return f"{value * 100:.1f}%" if percent else f"{value:,.0f}" if value >= 10 else f"{value:g}"


def _empty(width: int, height: int, kind: str) -> str:
    return (
        f'<svg class="chart chart-{kind}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f'<text x="10" y="20">no data yet</text></svg>'
    )


def _bars(chart: Chart) -> str:
    """Grouped horizontal bars: one group per label, one bar per series."""
    data: dict[str, dict[str, float]] = chart.data
    series: list[str] = []
    for values in data.values():
        series.extend(s for s in values if s not in series)
    width, left, bar_h = 560, 150, 12
    if not data:
        return _empty(width, 40, "bars")
    top = 10 + 18  # legend row
    group_h = bar_h * len(series) + 10
    height = top + group_h * len(data) + 10
    peak = max([1.0, *(v for values in data.values() for v in values.values())])
    scale = (width - left - 60) / peak
    out = [
        f'<svg class="chart chart-bars" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">'
    ]
    for i, name in enumerate(series):
        x = left + i * 80
        out.append(
            f'<rect class="legend" x="{x}" y="4" width="10" height="10" '
            f'fill="{PALETTE[i % len(PALETTE)]}"/><text x="{x + 14}" y="13">{escape(name)}</text>'
        )
    y = top
    for label, values in data.items():
        out.append(f'<text x="4" y="{y + group_h / 2:.0f}">{escape(label)}</text>')
        for i, name in enumerate(series):
            value = values.get(name)
            if value is None:
                continue
            w = max(value * scale, 0.5 if value else 0)
            by = y + i * bar_h
            shown = _fmt(value, chart.percent)
            out.append(
                f'<rect class="bar" data-series="{escape(name)}" x="{left}" y="{by}" '
                f'width="{w:.1f}" height="{bar_h - 2}" fill="{PALETTE[i % len(PALETTE)]}">'
                f"<title>{escape(label)} {escape(name)}: {shown}</title></rect>"
                f'<text x="{left + w + 4:.1f}" y="{by + bar_h - 3}">{shown}</text>'
            )
        y += group_h
    out.append("</svg>")
    return "".join(out)


def _lines(chart: Chart) -> str:
    data: dict[str, list[tuple[float, float]]] = chart.data
    width, height, left, bottom, top, right = 560, 260, 50, 36, 24, 20
    points = [p for values in data.values() for p in values]
    if not points:
        return _empty(width, 40, "lines")
    max_x = max([1.0, *(p[0] for p in points)])
    max_y = max([1e-9, *(p[1] for p in points)]) * 1.1
    sx = (width - left - right) / max_x
    sy = (height - top - bottom) / max_y

    def xy(x: float, y: float) -> str:
        return f"{left + x * sx:.1f},{height - bottom - y * sy:.1f}"

    out = [
        f'<svg class="chart chart-lines" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">',
        f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width - right}" '
        f'y2="{height - bottom}" stroke="#999"/>',
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" '
        f'stroke="#999"/>',
        f'<text x="{(width) / 2:.0f}" y="{height - 6}">{escape(chart.x_label)}</text>',
    ]
    for tick in range(5):
        value = max_y * tick / 4
        y = height - bottom - value * sy
        out.append(
            f'<text x="2" y="{y + 4:.1f}">{_fmt(value, chart.percent)}</text>'
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#eee"/>'
        )
    out.append(f'<text x="{left}" y="{height - bottom + 14}">0</text>')
    out.append(f'<text x="{width - right - 10}" y="{height - bottom + 14}">{max_x:g}</text>')
    for i, (name, values) in enumerate(data.items()):
        color = PALETTE[i % len(PALETTE)]
        path = " ".join(xy(x, y) for x, y in values)
        out.append(
            f'<polyline class="series" data-series="{escape(name)}" fill="none" '
            f'stroke="{color}" stroke-width="2" points="{path}"/>'
            f'<rect x="{left + 10 + i * 110}" y="6" width="10" height="10" fill="{color}"/>'
            f'<text x="{left + 24 + i * 110}" y="15">{escape(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _intervals(chart: Chart) -> str:
    """A forest plot: each estimate as a dot on its interval, with the zero line."""
    data: dict[str, tuple[float, float, float]] = chart.data
    width, left, right, row = 560, 190, 30, 34
    if not data:
        return _empty(width, 40, "intervals")
    height = 36 + row * len(data) + 24
    low = min([0.0, *(v[1] for v in data.values())])
    high = max([0.0, *(v[2] for v in data.values())])
    if math.isclose(low, high):
        high = low + 1
    pad = (high - low) * 0.05
    low, high = low - pad, high + pad
    scale = (width - left - right) / (high - low)

    def x(value: float) -> float:
        return left + (value - low) * scale

    out = [
        f'<svg class="chart chart-intervals" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">',
        f'<line class="zero" x1="{x(0):.1f}" y1="10" x2="{x(0):.1f}" y2="{height - 24}" '
        f'stroke="#999" stroke-dasharray="4 3"/>',
        f'<text x="{x(0) - 4:.1f}" y="{height - 8}">0</text>',
        f'<text x="{left}" y="{height - 8}" text-anchor="start">{_fmt(low, chart.percent)}</text>'
        if x(0) - left > 50
        else "",
        f'<text x="{width - right}" y="{height - 8}" text-anchor="end">'
        f"{_fmt(high, chart.percent)}</text>"
        if width - right - x(0) > 50
        else "",
    ]
    y = 36
    for i, (label, (estimate, lo, hi)) in enumerate(data.items()):
        color = PALETTE[i % len(PALETTE)]
        out.append(
            f'<text x="4" y="{y + 4}">{escape(label)}</text>'
            f'<line class="interval" x1="{x(lo):.1f}" y1="{y}" x2="{x(hi):.1f}" y2="{y}" '
            f'stroke="{color}" stroke-width="3"/>'
            f'<circle class="estimate" cx="{x(estimate):.1f}" cy="{y}" r="5" fill="{color}">'
            f"<title>{escape(label)}: {_fmt(estimate, chart.percent)} "
            f"[{_fmt(lo, chart.percent)}, {_fmt(hi, chart.percent)}]</title></circle>"
            f'<text x="{min(max(x(estimate), left + 60), width - right - 60):.1f}" y="{y - 8}" '
            f'text-anchor="middle">{_fmt(estimate, chart.percent)} '
            f"[{_fmt(lo, chart.percent)}, {_fmt(hi, chart.percent)}]</text>"
        )
        y += row
    out.append("</svg>")
    return "".join(out)
