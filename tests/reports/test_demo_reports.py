"""The demo ends with results coming in, the campaign reports and their HTML files."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from engine.clock import FrozenClock
from engine.conversions import match_conversions
from engine.db.models import Conversion
from engine.db.session import make_engine, make_session_factory
from engine.demo.report_step import RESULTS_AFTER
from engine.demo.run import run_demo
from engine.reports.campaign import campaign_report

REPO_CAMPAIGNS = Path(__file__).resolve().parents[2] / "campaigns"


def test_demo_imports_results_and_writes_reports(tmp_path: Path, clock: FrozenClock) -> None:
    report = run_demo(tmp_path, participants=600, seed=4, clock=clock, campaigns_dir=REPO_CAMPAIGNS)
    launched = [c for c in report.campaigns if c.run_id is not None]
    assert launched
    titles = [title for title, _ in report.sections]
    # The results, then the campaign reports; the report subscription's delivery comes last.
    at = next(i for i, title in enumerate(titles) if title.startswith("Results as of"))
    assert titles[at + 1].startswith("Campaign results")
    assert titles[-1].startswith("Report subscription")
    results = dict(report.sections[at + 1][1])
    assert set(results) == {c.campaign for c in launched}
    for c in launched:
        page = (tmp_path / f"report-{c.campaign}.html").read_text("utf-8")
        # the message funnel and conversion over time at least (a call funnel when the
        # campaign has a call step, the lift when it is defined), each in its figure
        assert page.count("<svg") == page.count("<figcaption>") >= 2
        assert "Funnel per message step" in page and "Conversion over time" in page
        assert f"Campaign report: {c.campaign}" in page and '<p class="verdict">' in page
        assert str(tmp_path / f"report-{c.campaign}.html") in results[c.campaign]

    engine = make_engine(report.database_url)
    sessions = make_session_factory(engine)
    try:
        with sessions() as session:
            total = session.scalar(select(func.count()).select_from(Conversion))
            assert total and total > 0
            summed = 0
            for c in launched:
                r = campaign_report(session, str(c.run_id))
                assert r.enrolled == r.treatment + r.holdout == c.treatment + c.holdout
                assert r.conversions == sum(g.converted for g in r.groups.values())
                summed += r.conversions
            assert summed == total
        with sessions() as session, session.begin():
            # matching again finds nothing new
            assert match_conversions(session, at=report.now + RESULTS_AFTER) == 0
    finally:
        engine.dispose()
