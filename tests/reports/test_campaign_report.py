"""The campaign report on a small known scenario: every figure by hand (both databases)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from report_helpers import call_task, enroll, event, make_run, members, message
from statsmodels.stats import proportion

from cli import cli
from engine.app import App
from engine.conversions import match_conversions
from engine.errors import InputError, NotFoundError
from engine.reports import stats
from engine.reports.campaign import CampaignReport, campaign_report
from engine.reports.common import parse_period
from engine.testing.fakes import make_program

T0 = datetime(2026, 1, 10, 14, 0, tzinfo=UTC)
AT = T0 + timedelta(days=40)
H = timedelta(hours=1)
D = timedelta(days=1)


def build_scenario(app: App) -> int:
    """10 treatment + 5 holdout members; see the expectations in the test below."""
    with app.sessions() as session, session.begin():
        program = make_program(session, at=T0)
        run = make_run(session, program, at=T0, window="30d")
        p = members(session, program, 15, at=T0)
        t = [enroll(session, run, p[i]) for i in range(10)]
        for i in range(5):
            enroll(session, run, p[10 + i], group="holdout")
        # email-1, an A/B step: a for t0..t4, b for t5..t9
        message(
            session, t[0], variant="a", status="delivered", at=T0 + H, opened=True, clicked=True
        )
        message(session, t[1], variant="a", status="delivered", at=T0 + H, opened=True)
        message(session, t[2], variant="a", status="bounced", at=T0 + H)
        message(session, t[3], variant="a", status="sent", at=T0 + H)
        message(session, t[4], variant="a", status="skipped", status_reason="suppressed", at=T0)
        message(session, t[5], variant="b", status="delivered", at=T0 + H)
        message(session, t[6], variant="b", status="delivered", at=T0 + H, opened=True)
        message(session, t[7], variant="b", status="failed", at=T0 + H)
        message(session, t[8], variant="b", status="queued", at=T0 + H)
        message(session, t[9], variant="b", status="skipped", status_reason="no_consent", at=T0)
        sms = {"step": "sms-1", "channel": "sms", "step_index": 1}
        message(session, t[0], status="delivered", at=T0 + 3 * D, **sms)  # type: ignore[arg-type]
        message(session, t[1], status="sending", at=T0 + 3 * D, **sms)  # type: ignore[arg-type]
        message(session, t[2], status="unknown", at=T0 + 3 * D, **sms)  # type: ignore[arg-type]
        message(session, t[5], status="skipped", status_reason="suppressed", at=T0, **sms)  # type: ignore[arg-type]
        message(session, t[6], status="queued", at=T0 + 3 * D, **sms)  # type: ignore[arg-type]
        # call-1
        call_task(session, t[0], at=T0 + 7 * D, status="closed", attempts=1,
                  reached_at=T0 + 7 * D, agent="ann")  # fmt: skip
        call_task(session, t[1], at=T0 + 7 * D, status="open")
        call_task(session, t[5], at=T0 + 7 * D, status="claimed", attempts=2,
                  reached_at=T0 + 8 * D, agent="bob")  # fmt: skip
        call_task(session, t[6], at=T0 + 7 * D, status="closed", attempts=3)
        # goal events
        event(session, p[0], "renewal", T0 + 2 * D, points=100, amount="50.00")
        event(session, p[1], "renewal", T0 + 5 * D)
        event(session, p[5], "redemption", T0 + 10 * D, points=20)
        event(session, p[6], "renewal", T0 + 1 * D, source="call")
        event(session, p[10], "renewal", T0 + 3 * D, amount="10.00")
        event(session, p[11], "renewal", T0 + 31 * D)  # after the window
        event(session, p[12], "login", T0 + 2 * D)  # not a goal event
        run_id = run.id
    with app.sessions() as session, session.begin():
        assert match_conversions(session, at=AT) == 5
    return run_id


def test_campaign_report_figures(app: App) -> None:
    run_id = build_scenario(app)
    with app.sessions() as session:
        report = campaign_report(session, str(run_id))
        by_name = campaign_report(session, "renewal-test")
    assert by_name == report
    assert report.runs == [run_id] and report.program == "loyalty"
    assert report.goal_events == ["renewal", "redemption"] and report.goal_window_days == 30
    assert (report.enrolled, report.treatment, report.holdout) == (15, 10, 5)
    assert report.enrolled == report.treatment + report.holdout

    email, sms = report.message_steps
    assert (email.step, email.channel) == ("email-1", "email")
    assert (email.created, email.skipped, email.eligible) == (10, 2, 8)
    assert (email.pending, email.unknown, email.failed, email.sent) == (1, 0, 1, 6)
    assert (email.delivered, email.bounced, email.awaiting) == (4, 1, 1)
    assert (email.opened, email.clicked) == (3, 1)
    # t6 converted: its queued SMS was skipped with the reason 'converted'.
    assert (sms.step, sms.created, sms.skipped, sms.eligible) == ("sms-1", 5, 2, 3)
    assert (sms.pending, sms.unknown, sms.failed, sms.sent, sms.delivered) == (1, 1, 0, 1, 1)
    for s in report.message_steps:
        assert s.created == s.skipped + s.eligible
        assert s.eligible == s.pending + s.unknown + s.failed + s.sent
        assert s.sent == s.delivered + s.bounced + s.awaiting

    (call,) = report.call_steps
    # t1 converted: its open task was closed.
    assert (call.tasks, call.open, call.claimed, call.closed) == (4, 0, 1, 3)
    assert (call.attempted, call.reached) == (3, 2)
    assert call.tasks == call.open + call.claimed + call.closed

    assert [(s.step, s.reason, s.count) for s in report.skips] == [
        ("email-1", "no_consent", 1),
        ("email-1", "suppressed", 1),
        ("sms-1", "converted", 1),
        ("sms-1", "suppressed", 1),
    ]
    assert sum(s.count for s in report.skips) == email.skipped + sms.skipped

    t, h = report.groups["treatment"], report.groups["holdout"]
    assert (t.enrolled, t.converted, t.rate) == (10, 4, 0.4)
    assert (h.enrolled, h.converted, h.rate) == (5, 1, 0.2)
    assert report.conversions == t.converted + h.converted == 5
    assert report.by_source == {"import": 4, "call": 1}
    assert sum(report.by_source.values()) == report.conversions
    assert (t.points, t.amount, h.points, h.amount) == (120, Decimal("50.00"), 0, Decimal("10.00"))
    # days to convert: treatment 1, 2, 5, 10 -> mean 108 h, lower median day 2; holdout 3.
    assert t.mean_hours_to_convert == pytest.approx(108.0)
    assert (t.median_days_to_convert, h.median_days_to_convert) == (2, 3)
    assert h.mean_hours_to_convert == pytest.approx(72.0)

    lift = report.lift
    assert lift.difference == pytest.approx(0.2)
    assert lift.relative_lift == pytest.approx(1.0)
    low, high = proportion.confint_proportions_2indep(4, 10, 1, 5, method="newcomb")
    assert lift.difference_ci is not None
    assert (lift.difference_ci.low, lift.difference_ci.high) == pytest.approx((low, high))
    _, p_value = proportion.proportions_ztest([4, 1], [10, 5])
    assert lift.p_value == pytest.approx(p_value)
    low, high = proportion.confint_proportions_2indep(4, 10, 1, 5, method="log", compare="ratio")
    assert lift.relative_lift_ci is not None
    assert (lift.relative_lift_ci.low + 1, lift.relative_lift_ci.high + 1) == pytest.approx(
        (low, high)
    )

    # cumulative conversion by day since enrollment
    assert len(report.timeline) == 11
    assert report.timeline[0].treatment_rate == 0.0
    assert report.timeline[1].treatment_rate == pytest.approx(0.1)
    assert report.timeline[2].treatment_rate == pytest.approx(0.2)
    assert report.timeline[3].holdout_rate == pytest.approx(0.2)
    assert report.timeline[10].treatment_rate == pytest.approx(0.4)

    a, b = report.variants
    assert (a.step, a.variant, a.recipients, a.converted) == ("email-1", "a", 4, 2)
    assert (b.step, b.variant, b.recipients, b.converted) == ("email-1", "b", 2, 2)
    assert a.vs_first is None and b.vs_first is not None
    assert b.vs_first == stats.compare(2, 2, 2, 4)

    touches = {(x.channel, x.step): x.conversions for x in report.last_touch}
    assert touches == {
        ("email", "email-1"): 3,
        ("call", "call-1"): 1,
        ("none", "holdout (not contacted)"): 1,
    }
    # Every treatment conversion had a touch; with the holdout row the table adds up.
    assert sum(touches.values()) == report.conversions


def test_unknown_target_and_period(app: App) -> None:
    run_id = build_scenario(app)
    with app.sessions() as session:
        with pytest.raises(NotFoundError, match="no launched campaign 'nope'"):
            campaign_report(session, "nope")
        with pytest.raises(NotFoundError, match="run 999"):
            campaign_report(session, "999")
        with pytest.raises(NotFoundError, match="in that period"):
            campaign_report(session, "renewal-test", period=parse_period("2025", at=AT))
        with pytest.raises(NotFoundError, match="no program 'other'"):
            campaign_report(session, "renewal-test", program="other")
        report = campaign_report(session, "renewal-test", period=parse_period("2026-01", at=AT))
        assert report.runs == [run_id]


def test_period_parsing() -> None:
    at = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    p = parse_period("2026-12", at=at)
    assert p is not None
    assert (p.start, p.end) == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    p = parse_period("2026-01-01..2026-01-31", at=at)
    assert p is not None and p.end == datetime(2026, 2, 1, tzinfo=UTC)
    p = parse_period("30d", at=at)
    assert p is not None and (p.start, p.end) == (at - timedelta(days=30), at)
    p = parse_period("2026-03-02", at=at)
    assert p is not None and p.contains(at) and not p.contains(p.end)
    assert parse_period(None, at=at) is None
    for bad in ("last week", "2026-13", "2026-02-01..2026-01-01", "0d"):
        with pytest.raises(InputError, match="is not a period"):
            parse_period(bad, at=at)


def _cli(app: App, *args: str) -> str:
    result = CliRunner().invoke(
        cli, ["--database-url", app.settings.database_url, *args], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_json_csv_table_html(app: App, tmp_path: Path) -> None:
    run_id = build_scenario(app)
    data = json.loads(_cli(app, "report", "campaign", str(run_id), "--json"))
    assert data["enrolled"] == 15 and data["groups"]["treatment"]["converted"] == 4
    assert data["lift"]["difference"] == pytest.approx(0.2)
    assert data["groups"]["holdout"]["amount"] == "10.00"

    text = _cli(app, "report", "campaign", "renewal-test")
    assert "Funnel per message step" in text and "treatment conversion rate" in text
    assert "40.00%" in text and "+20.00 pp" in text

    out = _cli(app, "report", "campaign", "renewal-test", "--csv")
    rows = list(csv.reader(io.StringIO(out)))
    header = rows.index(["step", "channel", "created", "skipped", "eligible", "pending",
                         "unknown", "failed", "sent", "delivered", "bounced", "awaiting",
                         "opened", "clicked", "converted (last touch)"])  # fmt: skip
    assert rows[header + 1][:5] == ["email-1", "email", "10", "2", "8"]
    assert rows[header + 1][-1] == "3"  # converted with email-1 as the last touch

    html = tmp_path / "report.html"
    out = _cli(app, "report", "campaign", "renewal-test", "--html", str(html))
    assert f"HTML report: {html}" in out
    page = html.read_text("utf-8")
    # message funnel, call funnel, conversion over time, lift
    assert page.count("<svg") == 4 and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )

    result = CliRunner().invoke(
        cli, ["--database-url", app.settings.database_url, "report", "campaign", "nope"]
    )
    assert result.exit_code == 1
    assert "no launched campaign 'nope'" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(
        cli,
        ["--database-url", app.settings.database_url, "report", "campaign", "x", "--period", "q3"],
    )
    assert result.exit_code == 1 and "--period 'q3' is not a period" in result.output


def test_empty_report_renders(app: App) -> None:
    with app.sessions() as session, session.begin():
        program = make_program(session, at=T0)
        run = make_run(session, program, at=T0)
        run_id = run.id
    with app.sessions() as session:
        report = campaign_report(session, str(run_id))
    assert isinstance(report, CampaignReport)
    assert report.enrolled == 0 and report.lift.difference is None
    assert report.tables() and report.charts()
