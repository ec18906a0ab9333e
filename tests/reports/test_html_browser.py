"""The HTML report opens and draws its charts in a real headless Chromium (Debian's package).

Without chromium the test skips with a loud reason, unless CAMPAIGN_REQUIRE_BROWSER=1 (set it
in CI) makes a missing browser a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_call_reports import MON, _log, _world
from test_campaign_report import build_scenario
from test_svg_geometry import STRESS_CHARTS

from cli import cli
from engine.app import App
from engine.reports.render import to_html

REQUIRE_BROWSER = os.environ.get("CAMPAIGN_REQUIRE_BROWSER") == "1"

# Appended to a copy of the report (the report itself has no script): measures what the
# browser laid out, so the test sees drawn charts, not just markup.
PROBE = """
<script>
const charts = [...document.querySelectorAll("figure svg")].map((svg) => {
  const box = svg.getBoundingClientRect();
  const shapes = [...svg.querySelectorAll("rect.bar, polyline.series, circle.estimate")];
  return {
    kind: svg.getAttribute("class"),
    width: box.width,
    height: box.height,
    drawn: shapes.filter((s) => { const b = s.getBBox(); return b.width > 0 || b.height > 0; })
      .length,
    shapes: shapes.length,
    // every label as the browser measured it, against the drawing's viewBox
    outside: [...svg.querySelectorAll("text")].filter((t) => {
      const b = t.getBBox();
      const v = svg.viewBox.baseVal;
      return b.x < 0 || b.y < 0 || b.x + b.width > v.width || b.y + b.height > v.height;
    }).map((t) => t.textContent),
    markers: [...svg.querySelectorAll("line.marker")].length,
  };
});
const probe = document.createElement("pre");
probe.id = "probe";
probe.textContent = JSON.stringify(charts);
document.body.appendChild(probe);
</script>
"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = (
            "!!! chromium is not installed: the HTML report was NOT checked in a browser "
            "(apt-get install -y chromium; CAMPAIGN_REQUIRE_BROWSER=1 makes this a failure)"
        )
        if REQUIRE_BROWSER:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def _probe(browser: str, page: Path, tmp_path: Path) -> tuple[str, list[dict[str, object]]]:
    """Open a copy of the report with PROBE in Chromium: (the DOM, what each chart drew)."""
    html = page.read_text("utf-8")
    # Self-contained: no script, stylesheet, image or font from anywhere.
    assert not re.search(r"<(script|link|img|iframe)\b", html)
    assert not re.search(r"(src|href)=", html)
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</body>", PROBE + "</body>"), "utf-8")
    dom = _dump_dom(browser, probed, tmp_path)
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert match, "the browser did not run the probe"
    return dom, json.loads(match.group(1).replace("&quot;", '"'))


def _dump_dom(browser: str, page: Path, tmp_path: Path) -> str:
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--window-size=1280,2000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_campaign_html_renders_in_chromium(app: App, tmp_path: Path) -> None:
    browser = _chromium()
    run_id = build_scenario(app)
    html = tmp_path / "campaign.html"
    result = CliRunner().invoke(
        cli,
        ["--database-url", app.settings.database_url, "report", "campaign", str(run_id),
         "--html", str(html)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    dom, probed = _probe(browser, html, tmp_path)
    assert "Campaign report: renewal-test" in dom
    assert "Funnel per message step" in dom
    kinds = [c["kind"] for c in probed]
    assert kinds == ["chart chart-bars", "chart chart-bars", "chart chart-lines",
                     "chart chart-intervals"]  # fmt: skip
    for chart in probed:
        assert chart["width"] > 100 and chart["height"] > 30
        assert chart["shapes"] > 0 and chart["drawn"] == chart["shapes"]
        assert chart["outside"] == []
    messages, calls, lines, lift = probed
    # message funnel: email-1 6 series + sms-1 6; call funnel: call-1 4; two lines; one lift
    # interval and one variant interval.
    assert (messages["shapes"], calls["shapes"]) == (12, 4)
    assert lines["shapes"] == 2
    assert lift["shapes"] == 2


def test_agents_html_renders_in_chromium(app: App, tmp_path: Path) -> None:
    """The agent comparison chart, drawn by the browser."""
    browser = _chromium()
    t1, t2, t3, _ = _world(app)
    _log(app, t1, "ana", "CONVERTED", MON + timedelta(minutes=5), action="renewed")
    _log(app, t2, "ana", "NO_ANSWER", MON + timedelta(minutes=20))
    _log(app, t3, "ben", "CONVERTED", MON + timedelta(minutes=30), action="renewed")
    html = tmp_path / "agents.html"
    result = CliRunner().invoke(
        cli,
        ["--database-url", app.settings.database_url, "report", "agents", "--period",
         "2026-03", "--html", str(html)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    dom, charts = _probe(browser, html, tmp_path)
    assert "Agent comparison" in dom
    assert charts, "no chart in the agents report"
    for chart in charts:
        assert chart["width"] > 100 and chart["height"] > 30
        assert chart["shapes"] and chart["drawn"] == chart["shapes"]
        assert chart["outside"] == []
    # ana and ben, each with calls, contacts and conversions
    assert charts[0]["kind"] == "chart chart-bars" and charts[0]["shapes"] == 6
    # the escalation chart draws its 20% ceiling
    assert [c["markers"] for c in charts] == [0, 0, 1]


def test_labels_stay_inside_as_chromium_measures_them(tmp_path: Path) -> None:
    """The width estimate the layout uses holds for the fonts a browser really draws: long,
    CJK and many labels, as Chromium measures them (getBBox), stay inside every drawing."""
    browser = _chromium()
    page = tmp_path / "stress.html"
    page.write_text(to_html("stress", [], STRESS_CHARTS, meta=""), "utf-8")
    _, probed = _probe(browser, page, tmp_path)
    assert len(probed) == len(STRESS_CHARTS)
    assert [c["outside"] for c in probed] == [[]] * len(STRESS_CHARTS)
