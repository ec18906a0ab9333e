"""Demo steps: results come in, then the manager's report.

``import_results`` writes a realistic file of the renewals, redemptions, activations and
logins that follow a campaign (``conversions.csv`` beside the database): for each launched
run, members of both groups do the campaign's goal event at a base rate, contacted members
somewhat more often (a modest, noisy lift, as real campaigns show), at a time inside the
attribution window. It is imported exactly as `campaign events import` does, which matches the
conversions. Renewals carry the membership fee, redemptions the points redeemed.

``campaign_reports`` then builds the campaign report of every run, keeps its headline in the
demo report and writes ``report-<campaign>.html`` (self-contained, with charts) beside the
database. Figures are "as of" RESULTS_AFTER days after the launch (the day before the demo
ran: see STORY_LENGTH in engine/demo/run.py).
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from engine.conversions import match_imported
from engine.db.models import CampaignRun, Enrollment, Participant
from engine.definitions.loader import parse_definition
from engine.demo.run import PROGRAM_KEY, DemoContext
from engine.participants.events import import_events
from engine.reports.campaign import campaign_report
from engine.reports.common import pct
from engine.reports.render import to_html

RESULTS_AFTER = timedelta(days=28)  # inside every example goal window; < STORY_LENGTH
RESULTS_FILE = "conversions.csv"
# Goal event -> (holdout rate, treatment rate): what such campaigns typically see.
RATES = {
    "renewal": (0.55, 0.66),
    "redemption": (0.08, 0.13),
    "activation": (0.20, 0.27),
    "login": (0.10, 0.14),
}
DEFAULT_RATES = (0.08, 0.11)
FEES = {"basic": "49.00", "silver": "89.00", "gold": "149.00", "platinum": "249.00"}


@dataclass(frozen=True)
class CampaignResult:
    campaign: str
    run_id: int
    html: Path
    treatment: int
    holdout: int
    treatment_rate: str
    holdout_rate: str
    lift: str
    p_value: str
    amount: str
    points: int
    verdict: str


def results_at(ctx: DemoContext) -> datetime:
    return ctx.now + RESULTS_AFTER


def import_results(ctx: DemoContext) -> None:
    app = ctx.require_app()
    runs = [c for c in ctx.campaigns if c.run_id is not None]
    if not runs:
        return
    at = results_at(ctx)
    rng = random.Random(ctx.seed * 7919 + 17)
    path = ctx.folder / RESULTS_FILE
    rows = 0
    with (
        app.sessions() as session,
        path.open("w", encoding="utf-8", newline="") as handle,
    ):
        writer = csv.writer(handle)
        writer.writerow(["external_id", "type", "occurred_at", "points", "amount", "reference"])
        for figures in runs:
            run = session.get(CampaignRun, figures.run_id)
            assert run is not None
            goal = parse_definition(run.definition_source, run.campaign).definition.goal
            kind = goal.events[0]
            base, lifted = RATES.get(kind, DEFAULT_RATES)
            members = session.execute(
                select(
                    Participant.external_id,
                    Participant.tier,
                    Participant.points_balance,
                    Enrollment.group,
                    Enrollment.enrolled_at,
                )
                .join(Participant, Participant.id == Enrollment.participant_id)
                .where(Enrollment.run_id == run.id)
                .order_by(Enrollment.id)
            ).all()
            horizon = min(goal.window, at - run.launched_at)
            for external_id, tier, balance, group, enrolled_at in members:
                if rng.random() >= (lifted if group == "treatment" else base):
                    continue
                # Early days convert more: a decaying delay inside the window.
                delay = horizon * min(rng.expovariate(4.0), 0.999)
                occurred = enrolled_at + delay
                points, amount = "", ""
                if kind == "redemption":
                    # feeds record a redemption as the points leaving the balance
                    points = str(-min(max(balance or 0, 500), rng.choice((500, 1000, 2500))))
                elif kind == "renewal":
                    amount = FEES.get(tier or "basic", "49.00")
                writer.writerow(
                    [
                        external_id,
                        kind,
                        occurred.isoformat(timespec="seconds"),
                        points,
                        amount,
                        f"demo-{run.campaign}-{external_id}",
                    ]
                )
                rows += 1
    summary = import_events(
        app,
        path,
        program_key=PROGRAM_KEY,
        rejects_path=ctx.folder / "conversions.rejects.csv",
        at=at,
    )
    matched = match_imported(app, imported_at=at, at=at)
    ctx.sections.append(
        (
            f"Results as of {at.date().isoformat()} ({RESULTS_AFTER.days} days after launch)",
            [
                ("goal events", f"{rows:,} written to {path}, {summary.inserted:,} imported"),
                ("conversions", f"{matched:,} matched (treatment and holdout)"),
            ],
        )
    )


def campaign_reports(ctx: DemoContext) -> None:
    app = ctx.require_app()
    results = []
    for figures in ctx.campaigns:
        if figures.run_id is None:
            continue
        with app.sessions() as session:
            report = campaign_report(session, str(figures.run_id))
        html = ctx.folder / f"report-{report.campaign}.html"
        html.write_text(
            to_html(
                f"Campaign report: {report.campaign}",
                report.tables(),
                report.charts(),
                meta=f"Demo program {PROGRAM_KEY}; run {figures.run_id}; "
                f"results as of {results_at(ctx).date().isoformat()}",
                verdicts=report.verdicts(),
            ),
            encoding="utf-8",
        )
        t, h, lift = report.groups["treatment"], report.groups["holdout"], report.lift
        ci = lift.difference_ci
        results.append(
            CampaignResult(
                campaign=report.campaign,
                run_id=figures.run_id,
                html=html,
                treatment=t.enrolled,
                holdout=h.enrolled,
                treatment_rate=f"{t.converted:,}/{t.enrolled:,} = {pct(t.rate)}",
                holdout_rate=f"{h.converted:,}/{h.enrolled:,} = {pct(h.rate)}",
                lift=""
                if lift.difference is None or ci is None
                else f"{lift.difference * 100:+.1f} pp [{ci.low * 100:+.1f}, {ci.high * 100:+.1f}]",
                p_value="" if lift.p_value is None else f"{lift.p_value:.3g}",
                amount=str(t.amount + h.amount),
                points=t.points + h.points,
                verdict=report.verdict.text,
            )
        )
    if results:
        ctx.sections.append(
            (
                "Campaign results (treatment vs holdout, 95% interval of the lift)",
                [
                    *(
                        (
                            r.campaign,
                            f"treatment {r.treatment_rate}, holdout {r.holdout_rate}, "
                            f"lift {r.lift or 'n/a'}, p {r.p_value or 'n/a'}: {r.verdict}; "
                            f"report {r.html}",
                        )
                        for r in results
                    ),
                ],
            )
        )
