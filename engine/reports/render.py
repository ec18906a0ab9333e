"""Renderers shared by every report: CSV text and one self-contained HTML file with inline SVG
charts (engine/reports/svg.py; no script, no stylesheet or font from the network: it opens
anywhere, offline).

A report object offers ``tables() -> list[Table]`` and ``charts() -> list[Chart]``; the
terminal table and --json live in the CLI. The HTML (like the terminal) leaves out a table
without rows and a chart without data rather than showing an empty frame; CSV keeps every
table's block (its header alone) so a spreadsheet import sees the same blocks every time.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from html import escape
from typing import Any

from engine.csv_safe import SafeWriter
from engine.reports.common import Chart, Table
from engine.reports.svg import svg


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

# The page's only style, inline (the console's CSP allows it by its hash).
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:2rem;color:#222;max-width:1200px}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}
th{background:#f3f5f8}td:first-child,th:first-child{text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem}
figure{margin:0}figcaption{font-weight:600;margin-bottom:.25rem}
.meta{color:#666;font-size:.85rem}svg text{fill:#333}
.verdict{font-size:1rem;font-weight:600}
"""


def to_html(
    title: str,
    tables: Sequence[Table],
    charts: Sequence[Chart],
    *,
    meta: str,
    verdicts: Sequence[str] = (),
) -> str:
    """The report as one HTML page: the verdicts (comparisons in words) first, then the
    charts and the tables."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
            report_body(title, tables, charts, meta=meta, verdicts=verdicts),
            "</body></html>",
        ]
    )


def report_body(
    title: str,
    tables: Sequence[Table],
    charts: Sequence[Chart],
    *,
    meta: str,
    verdicts: Sequence[str] = (),
) -> str:
    """What :func:`to_html` puts in the page's body; the console (engine/web/reports.py)
    shows it inside its own layout."""
    tables = [t for t in tables if t.rows]
    charts = [c for c in charts if c.data]
    parts = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">{escape(meta)}</p>',
        *(f'<p class="verdict">{escape(line)}</p>' for line in verdicts),
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
        for row in table.rows:
            parts.append("<tr>" + "".join(f"<td>{escape(cell(v))}</td>" for v in row) + "</tr>")
        parts.append("</tbody></table>")
    if not tables and not charts:
        parts.append("<p>Nothing to report for these filters.</p>")
    return "\n".join(parts)
