"""Reports say what they mean: verdicts in words, the smallest lift a holdout could detect,
counts where counts belong, no "None", and no empty sections (both databases)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from report_helpers import call_task, enroll, event, make_run, members
from statsmodels.stats import proportion
from test_campaign_report import AT, T0, D, build_scenario

from cli import cli
from engine.app import App
from engine.conversions import match_conversions
from engine.reports import stats
from engine.reports.campaign import NO_STEP, campaign_report
from engine.reports.verdicts import BETTER, NO_DATA, NO_DIFFERENCE, NOT_CONCLUSIVE, WORSE, verdict
from engine.testing.fakes import make_program

# --------------------------------------------------------------------------- numbers by hand


def test_minimum_detectable_effect_by_hand() -> None:
    # (z.975 + z.8) * sqrt(p (1 - p) (1/n1 + 1/n2)), z.975 + z.8 = 1.959964 + 0.841621
    # 186 vs 14 at 12%: 2.801585 * sqrt(0.1056 * 0.0768049) = 2.801585 * 0.0900589 = 0.25231
    assert stats.detectable_difference(186, 14, 0.12) == pytest.approx(0.25231, abs=1e-5)
    # 100 vs 100 at 12%: 2.801585 * sqrt(0.1056 * 0.02) = 2.801585 * 0.0459565 = 0.12875
    assert stats.detectable_difference(100, 100, 0.12) == pytest.approx(0.12875, abs=1e-5)
    # a bigger holdout detects smaller lifts
    assert stats.detectable_difference(186, 1400, 0.12) < stats.detectable_difference(186, 14, 0.12)
    assert stats.detectable_difference(0, 14, 0.12) is None
    assert stats.detectable_difference(186, 14, 0.0) is None


def _interval(x1: int, n1: int, x2: int, n2: int) -> str:
    low, high = proportion.confint_proportions_2indep(x1, n1, x2, n2, method="newcomb")
    return f"95% interval {low * 100:.1f} to {high * 100:.1f}"


def test_a_small_holdout_says_what_it_could_have_detected() -> None:
    # 20/186 = 10.75% vs 1/14 = 7.14%: +3.6 pp. Pooled 21/200 = 10.5%:
    # 2.801585 * sqrt(0.105 * 0.895 * 0.0768049) = 2.801585 * 0.0849576 = 0.2380 -> 23.8 pp
    said = verdict(stats.compare(20, 186, 1, 14))
    assert said.outcome == NOT_CONCLUSIVE
    assert said.text == (
        f"treatment converts 3.6 pp more than holdout, {_interval(20, 186, 1, 14)}: not "
        "conclusive; this holdout could only detect a lift of 23.8 pp or more (80% power)"
    )
    assert said.detectable_difference == pytest.approx(0.2380, abs=1e-4)


def test_better_worse_and_no_difference() -> None:
    better = verdict(stats.compare(30, 100, 10, 100))
    assert better.outcome == BETTER
    # Newcombe: 9.0 to 30.6 (statsmodels gives 0.0900, 0.3058)
    assert better.text == (
        "treatment converts 20.0 pp more than holdout, 95% interval 9.0 to 30.6: "
        "treatment is better"
    )
    worse = verdict(stats.compare(10, 100, 30, 100))
    assert worse.outcome == WORSE
    assert worse.text == (
        "treatment converts 20.0 pp less than holdout, 95% interval -30.6 to -9.0: "
        "holdout is better"
    )
    same = verdict(stats.compare(12, 100, 12, 100))
    assert same.outcome == NO_DIFFERENCE
    assert same.text == (
        "no detectable difference at 95% (95% interval -9.3 to 9.3 pp); "
        "this holdout could only detect a lift of 12.9 pp or more (80% power)"
    )


def test_groups_too_small_for_any_lift_and_no_data() -> None:
    # 4/10 vs 1/5: a detectable lift of 72.3 pp, more than the 66.7 pp a base rate of 1/3
    # leaves: no lift could be seen.
    said = verdict(stats.compare(4, 10, 1, 5))
    assert said.text == (
        f"treatment converts 20.0 pp more than holdout, {_interval(4, 10, 1, 5)}: not "
        "conclusive; this holdout is too small to detect any lift (80% power)"
    )
    assert verdict(stats.compare(0, 10, 0, 5)).outcome == NO_DATA
    assert verdict(stats.compare(3, 10, 0, 0)).text == "no comparison: holdout has no members"


# --------------------------------------------------------------------------- the reports


def _cli(app: App, *args: str) -> str:
    result = CliRunner().invoke(
        cli, ["--database-url", app.settings.database_url, *args], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_campaign_report_carries_verdicts_and_a_run_count(app: App, tmp_path: Path) -> None:
    run_id = build_scenario(app)
    with app.sessions() as session:
        report = campaign_report(session, str(run_id))
    lift_words = (
        f"treatment converts 20.0 pp more than holdout, {_interval(4, 10, 1, 5)}: not "
        "conclusive; this holdout is too small to detect any lift (80% power)"
    )
    assert report.verdict.text == lift_words
    a, b = report.variants
    # variant b 2/2 vs variant a 2/4
    assert a.verdict is None and b.verdict is not None
    assert b.verdict.text == (
        f"variant b converts 50.0 pp more than variant a, {_interval(2, 2, 2, 4)}: not "
        "conclusive; groups this size are too small to detect any difference (80% power)"
    )
    headline = dict(report.tables()[0].rows)
    assert headline["runs"] == 1 and headline["verdict"] == lift_words

    text = _cli(app, "report", "campaign", str(run_id))
    assert "verdict" in text and "None" not in text
    data = json.loads(_cli(app, "report", "campaign", str(run_id), "--json"))
    assert data["runs"] == [run_id] and data["verdict"]["outcome"] == NOT_CONCLUSIVE
    assert data["lift"]["detectable_difference"] == pytest.approx(0.72337, abs=1e-5)
    html = tmp_path / "r.html"
    _cli(app, "report", "campaign", str(run_id), "--html", str(html))
    page = html.read_text("utf-8")
    assert f'<p class="verdict">Treatment vs holdout: {lift_words}.</p>' in page


def test_empty_sections_are_left_out(app: App, tmp_path: Path) -> None:
    """A run without A/B steps, skips, call steps or conversions: those tables are not shown
    (text and HTML); JSON keeps the empty lists."""
    with app.sessions() as session, session.begin():
        program = make_program(session, at=T0)
        run = make_run(session, program, at=T0)
        for p in members(session, program, 3, at=T0):
            enroll(session, run, p)
        run_id = run.id
    text = _cli(app, "report", "campaign", str(run_id))
    assert "Campaign renewal-test" in text
    for title in ("A/B variants", "Skips by reason", "Funnel per call step",
                  "Conversions by last touch", "Conversions by source"):  # fmt: skip
        assert title not in text
    assert "(none)" not in text
    html = tmp_path / "r.html"
    _cli(app, "report", "campaign", str(run_id), "--html", str(html))
    page = html.read_text("utf-8")
    assert "A/B variants" not in page and "(none)" not in page
    assert "Funnel per call step" not in page  # neither the table nor the chart
    data = json.loads(_cli(app, "report", "campaign", str(run_id), "--json"))
    assert data["variants"] == [] and data["skips"] == [] and data["call_steps"] == []
    # the verdict says why there is nothing to compare
    assert data["verdict"]["text"] == "no comparison: holdout has no members"

    # a report with nothing at all says so in one line
    out = _cli(app, "report", "complaints", "--period", "2026-01")
    assert out == "Complaints: nothing to report for these filters.\n"


def test_a_call_without_a_step_is_named_not_none(app: App) -> None:
    """A conversion whose last touch is a call task of no step (a callback made before its
    step was recorded) shows "(no step)", never "None"."""
    with app.sessions() as session, session.begin():
        program = make_program(session, at=T0)
        run = make_run(session, program, at=T0)
        (p,) = members(session, program, 1, at=T0)
        task = call_task(
            session, enroll(session, run, p), at=T0 + D, status="closed", attempts=1,
            reached_at=T0 + D, agent="ann",
        )  # fmt: skip
        task.kind, task.step_id = "callback", None
        event(session, p, "renewal", T0 + 2 * D)
        run_id = run.id
    with app.sessions() as session, session.begin():
        assert match_conversions(session, at=AT) == 1
    with app.sessions() as session:
        report = campaign_report(session, str(run_id))
    assert [(t.channel, t.step, t.conversions) for t in report.last_touch] == [("call", NO_STEP, 1)]
    touches = next(t for t in report.tables() if t.title == "Conversions by last touch")
    assert list(touches.rows) == [("call", "(no step)", 1)]
