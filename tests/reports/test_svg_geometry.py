"""Every label of every chart lies inside its drawing.

The SVG is parsed (xml.etree) and each <text>'s extent is estimated from its font size and
its characters (0.6 em each, East Asian wide characters counting double), with its
text-anchor; the extent must lie inside the viewBox. Chromium's own measure of the same is in
test_html_browser.py.
"""

from __future__ import annotations

import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import timedelta

import pytest
from test_call_reports import MON, _log, _world
from test_campaign_report import build_scenario

from engine.app import App
from engine.reports.agents import agents_report
from engine.reports.campaign import campaign_report
from engine.reports.common import Chart, parse_period
from engine.reports.render import to_html
from engine.reports.svg import svg

NS = "{http://www.w3.org/2000/svg}"
EM = 0.6


def estimated_width(text: str, size: float) -> float:
    return size * EM * sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def shown_text(element: ET.Element) -> str:
    """What a <text> draws: its own text and the tails of its children (a <title> tooltip is
    not drawn)."""
    parts = [element.text or ""]
    for child in element:
        if child.tag != f"{NS}title":
            parts.append("".join(child.itertext()))
        parts.append(child.tail or "")
    return "".join(parts)


def texts(root: ET.Element) -> Iterator[tuple[str, float, float, float, str]]:
    """(text, x, y, font size, anchor) of every <text>, the font size inherited."""

    def walk(element: ET.Element, size: float) -> Iterator[tuple[str, float, float, float, str]]:
        size = float(element.get("font-size", size))
        if element.tag == f"{NS}text":
            anchor = element.get("text-anchor", "start")
            x, y = float(element.get("x", 0)), float(element.get("y", 0))
            yield shown_text(element), x, y, size, anchor
        for child in element:
            if child.tag != f"{NS}title":
                yield from walk(child, size)

    yield from walk(root, 16.0)  # 16 px: the browser default, if nothing sets a size


def outside_labels(markup: str) -> list[str]:
    """The labels of one <svg> whose estimated extent leaves its viewBox."""
    root = ET.fromstring(markup)
    _, _, width, height = (float(v) for v in root.get("viewBox", "").split())
    problems = []
    for text, x, y, size, anchor in texts(root):
        w = estimated_width(text, size)
        left = {"start": x, "middle": x - w / 2, "end": x - w}[anchor]
        top, bottom = y - size, y + 0.3 * size
        if left < 0 or left + w > width or top < 0 or bottom > height:
            problems.append(
                f"{text!r}: x {left:.1f}..{left + w:.1f} of {width:g}, "
                f"y {top:.1f}..{bottom:.1f} of {height:g}"
            )
    return problems


def svgs(page: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", page, re.S)


def test_the_estimate_counts_cjk_double() -> None:
    assert estimated_width("abcd", 10) == pytest.approx(24.0)
    assert estimated_width("王小明", 10) == pytest.approx(36.0)


LONG = "renewal-reminder-with-a-very-long-step-name"
CJK = "续费提醒电子邮件第一步骤和第二步骤"


# Charts that push every edge (also drawn in Chromium by test_html_browser.py).
STRESS_CHARTS = [
    # six series: the legend used to run past the 560 px canvas
    Chart(
        "bars",
        "funnel",
        {
            f"{LONG} (email)": {"eligible": 1_234_567, "sent": 1_200_000,
                                "delivered": 1_100_000, "opened": 400_000,
                                "clicked": 90_000, "converted": 12_345},
            f"{CJK} (sms)": {"eligible": 10, "sent": 9, "delivered": 9, "opened": 0,
                             "clicked": 0, "converted": 1},
        },
    ),
    # nine series with long names wrap onto several legend rows
    Chart(
        "bars",
        "many",
        {"a": {f"series number {i} with a long name": float(i) for i in range(9)}},
    ),
    Chart(
        "bars",
        "rates",
        {"王小明": {"escalation rate": 0.5}, LONG: {"escalation rate": 0.9999}},
        unit="percent",
        markers={"ceiling 20%": 0.2},
    ),
    # a marker near the right edge puts its label on the left of the line
    Chart("bars", "edge", {"x": {"v": 0.1}}, unit="percent", markers={"a long ceiling": 1.0}),
    Chart(
        "intervals",
        "lift",
        {
            "treatment vs holdout": (0.088, -0.012, 0.161),
            f"{LONG} variant-b vs first": (0.95, 0.90, 0.99),  # at the right edge
            f"{CJK} vs first": (-0.95, -0.99, -0.90),  # at the left edge
        },
        unit="pp",
    ),
    Chart(
        "lines",
        "over time",
        {
            "treatment": [(0, 0.0), (364, 0.999)],
            "holdout": [(0, 0.0), (364, 0.5)],
            "a third series": [(0, 0.0)],
            "a fourth series with a long name": [(0, 0.0)],
            "a fifth series with a long name": [(0, 0.0)],
        },
        x_label="days since enrollment, with a label long enough to need cutting " * 2,
        unit="percent",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    "chart",
    STRESS_CHARTS,
    ids=["funnel", "legend-wraps", "ceiling", "marker-at-edge", "intervals", "lines"],
)
def test_every_label_is_inside_the_drawing(chart: Chart) -> None:
    assert outside_labels(svg(chart)) == []


def _bar_scale(root: ET.Element) -> tuple[float, float]:
    """(x of the value 0, px per unit) from the drawn bars."""
    bar = next(
        b
        for b in root.iter(f"{NS}rect")
        if b.get("class") == "bar" and float(b.get("data-value", 0))
    )
    return float(bar.get("x", 0)), float(bar.get("width", 0)) / float(bar.get("data-value", 1))


def test_the_ceiling_line_is_drawn_at_20_percent() -> None:
    chart = Chart(
        "bars",
        "escalation",
        {"ana": {"escalation rate": 0.133}, "maria": {"escalation rate": 0.5}},
        unit="percent",
        markers={"ceiling 20%": 0.2},
    )
    root = ET.fromstring(svg(chart))
    zero, per_unit = _bar_scale(root)
    (line,) = [e for e in root.iter(f"{NS}line") if e.get("class") == "marker"]
    assert float(line.get("x1", 0)) == float(line.get("x2", 0))
    assert float(line.get("x1", 0)) == pytest.approx(zero + 0.2 * per_unit, abs=0.1)
    # it crosses every bar's row
    bars = [b for b in root.iter(f"{NS}rect") if b.get("class") == "bar"]
    assert float(line.get("y1", 0)) <= min(float(b.get("y", 0)) for b in bars)
    assert float(line.get("y2", 0)) >= max(float(b.get("y", 0)) + 10 for b in bars)
    assert "ceiling 20%" in [text for text, *_ in texts(root)]


def test_a_shortened_label_keeps_its_full_text_as_a_tooltip() -> None:
    label = "x" * 120
    root = ET.fromstring(svg(Chart("bars", "long", {label: {"n": 1}})))
    (text,) = [t for t in root.iter(f"{NS}text") if shown_text(t).startswith("xxx")]
    assert shown_text(text).endswith("…") and len(shown_text(text)) < len(label)
    assert text.find(f"{NS}title") is not None and text.find(f"{NS}title").text == label  # type: ignore[union-attr]


def test_campaign_report_charts(app: App) -> None:
    """The real report: separate funnels with their own legends, pp on the lift chart, and
    every label inside."""
    run_id = build_scenario(app)
    with app.sessions() as session:
        report = campaign_report(session, str(run_id))
    page = to_html("t", report.tables(), report.charts(), meta="m")
    drawn = svgs(page)
    # message funnel, call funnel, conversion over time, lift
    assert len(drawn) == 4
    for markup in drawn:
        assert outside_labels(markup) == []
    messages, calls, _, lift = (ET.fromstring(m) for m in drawn)

    def legend(root: ET.Element) -> list[str]:
        return [shown_text(t) for t in root.iter(f"{NS}text") if t.get("class") == "legend"]

    assert legend(messages) == ["eligible", "sent", "delivered", "opened", "clicked", "converted"]
    assert legend(calls) == ["tasks", "attempted", "reached", "converted"]
    labels = [text for text, *_ in texts(lift)]
    # 4/10 vs 1/5: +20.0 pp, Newcombe interval -28.4 to +53.1 (checked in test_report_words)
    assert "+20.0 pp [-28.4 pp, +53.1 pp]" in labels
    assert not any("%" in label for label in labels)


def test_agents_report_charts(app: App) -> None:
    t1, t2, t3, _ = _world(app)
    _log(app, t1, "ana", "CONVERTED", MON + timedelta(minutes=5), action="renewed")
    _log(app, t2, "ana", "ESCALATED", MON + timedelta(minutes=20), team="escalations",
         reason="wants a manager")  # fmt: skip
    _log(app, t3, "ben", "CONVERTED", MON + timedelta(minutes=30), action="renewed")
    at = MON + timedelta(hours=2)
    with app.sessions() as session:
        report = agents_report(
            session, at=at, settings=app.settings, period=parse_period("2026-03", at=at)
        )
    drawn = svgs(to_html("t", report.tables(), report.charts(), meta="m"))
    assert len(drawn) == 3
    for markup in drawn:
        assert outside_labels(markup) == []
    escalation = ET.fromstring(drawn[2])
    zero, per_unit = _bar_scale(escalation)
    (line,) = [e for e in escalation.iter(f"{NS}line") if e.get("class") == "marker"]
    assert float(line.get("x1", 0)) == pytest.approx(zero + 0.2 * per_unit, abs=0.1)
    # ana escalated one of her two contacts (50%), ben none of his one
    bars = [b for b in escalation.iter(f"{NS}rect") if b.get("class") == "bar"]
    assert [float(b.get("data-value", -1)) for b in bars] == [0.5, 0.0]
