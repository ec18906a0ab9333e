"""`campaign report retention`: renewals due vs renewed, by cohort, contacted vs holdout.

"Renewals due" are the enrollments of the runs whose goal counts renewals (a goal event
``renewal``, or ``--event``): the members a renewal campaign picked because their renewal came
due. A member "renewed" when the enrollment converted with that event type inside the window.
The cohort is the month (UTC) of enrollment. Per cohort and group: due, renewed, the retention
rate with its Wilson 95% interval; "contacted" is the part of the treatment group that was
actually reached (a message accepted by the provider, or a call that reached them), and the
lift row compares treatment with holdout (Newcombe interval, pooled z test: see stats).
Numbers add up: due = treatment + holdout in every cohort; contacted <= treatment.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, literal_column, or_, select
from sqlalchemy.orm import Session

from engine.conversions import run_goals
from engine.db.models import CallTask, CampaignRun, Conversion, Enrollment, OutboxMessage
from engine.reports import stats
from engine.reports.common import (
    Chart,
    Period,
    Table,
    check_campaign,
    pct,
    program_id,
    ratio,
)
from engine.reports.verdicts import Verdict, verdict


@dataclass(frozen=True)
class CohortRow:
    cohort: str  # YYYY-MM
    treatment_due: int
    treatment_renewed: int
    contacted_due: int
    contacted_renewed: int
    holdout_due: int
    holdout_renewed: int
    treatment_rate: float | None
    contacted_rate: float | None
    holdout_rate: float | None
    lift: stats.Comparison
    verdict: Verdict  # the lift in words

    @property
    def due(self) -> int:
        return self.treatment_due + self.holdout_due

    @property
    def renewed(self) -> int:
        return self.treatment_renewed + self.holdout_renewed


@dataclass(frozen=True)
class RetentionReport:
    event: str
    period: str | None
    program: str | None
    campaign: str | None
    generated_at: datetime
    runs: list[int]
    cohorts: list[CohortRow]
    total: CohortRow | None

    def tables(self) -> list[Table]:
        rows = [
            (c.cohort, c.due, c.renewed, c.treatment_due, c.treatment_renewed,
             pct(c.treatment_rate), c.contacted_due, c.contacted_renewed, pct(c.contacted_rate),
             c.holdout_due, c.holdout_renewed, pct(c.holdout_rate),
             "" if c.lift.difference is None else f"{c.lift.difference * 100:+.2f} pp",
             _ci(c.lift.difference_ci),
             "" if c.lift.p_value is None else f"{c.lift.p_value:.4g}")
            for c in [*self.cohorts, *self.totals()]
        ]  # fmt: skip
        said = [(c.cohort, c.verdict.text) for c in [*self.cohorts, *self.totals()]]
        return [
            Table(
                f"Retention ({self.event}) by cohort: renewals due vs renewed",
                ["cohort", "due", "renewed", "treatment due", "treatment renewed",
                 "treatment rate", "contacted due", "contacted renewed", "contacted rate",
                 "holdout due", "holdout renewed", "holdout rate", "lift", "95% CI of lift",
                 "p-value"],
                rows,
            ),
            Table("Treatment vs holdout, in words", ["cohort", "verdict"], said),
        ]  # fmt: skip

    def totals(self) -> list[CohortRow]:
        return [self.total] if self.total else []

    def verdicts(self) -> list[str]:
        """The overall comparison in words, for the top of the HTML report."""
        return [f"All cohorts, treatment vs holdout: {r.verdict.text}." for r in self.totals()]

    def charts(self) -> list[Chart]:
        lines = {
            "treatment": [(float(i), c.treatment_rate or 0.0) for i, c in enumerate(self.cohorts)],
            "contacted": [(float(i), c.contacted_rate or 0.0) for i, c in enumerate(self.cohorts)],
            "holdout": [(float(i), c.holdout_rate or 0.0) for i, c in enumerate(self.cohorts)],
        }
        intervals = {
            c.cohort: (c.lift.difference, c.lift.difference_ci.low, c.lift.difference_ci.high)
            for c in self.cohorts
            if c.lift.difference is not None and c.lift.difference_ci is not None
        }
        first = self.cohorts[0].cohort if self.cohorts else ""
        return [
            Chart(
                "bars",
                "Renewals due vs renewed by cohort",
                {c.cohort: {"due": c.due, "renewed": c.renewed} for c in self.cohorts},
            ),
            Chart("lines", "Retention rate by cohort: treatment, contacted, holdout", lines,
                  x_label=f"cohort (0 = {first})", y_label="renewed", unit="percent"),
            Chart("intervals", "Lift over holdout in percentage points (pp), with its 95% "
                  "interval, by cohort", intervals, unit="pp"),
        ]  # fmt: skip


def _ci(interval: stats.Interval | None) -> str:
    if interval is None:
        return ""
    return f"[{interval.low * 100:+.2f}, {interval.high * 100:+.2f}] pp"


def _month(dialect: str) -> Any:
    if dialect == "sqlite":
        return literal_column("substr(enrollments.enrolled_at, 1, 7)")
    return literal_column("to_char(enrollments.enrolled_at AT TIME ZONE 'UTC', 'YYYY-MM')")


def retention_report(
    session: Session,
    *,
    at: datetime,
    event: str = "renewal",
    period: Period | None = None,
    program: str | None = None,
    campaign: str | None = None,
) -> RetentionReport:
    pid = program_id(session, program)
    check_campaign(session, campaign, program=program)
    goal_runs = {g.run_id for g in run_goals(session) if event in g.events}
    query = select(CampaignRun.id).where(CampaignRun.id.in_(goal_runs))
    if pid is not None:
        query = query.where(CampaignRun.program_id == pid)
    if campaign is not None:
        query = query.where(CampaignRun.campaign == campaign)
    runs = sorted(int(r) for r in session.scalars(query))

    e = Enrollment
    month = _month(session.get_bind().dialect.name)
    renewed = exists().where(Conversion.enrollment_id == e.id, Conversion.event_type == event)
    contacted = or_(
        exists().where(
            OutboxMessage.enrollment_id == e.id,
            OutboxMessage.sent_at.is_not(None),
            OutboxMessage.status.in_(("sent", "delivered")),
        ),
        exists().where(CallTask.enrollment_id == e.id, CallTask.reached_at.is_not(None)),
    )
    q = (
        select(
            month,
            e.group,
            func.count(),
            func.count().filter(renewed),
            func.count().filter(and_(e.group == "treatment", contacted)),
            func.count().filter(and_(e.group == "treatment", contacted, renewed)),
        )
        .where(e.run_id.in_(runs))
        .group_by(month, e.group)
    )
    if period is not None:
        q = q.where(e.enrolled_at >= period.start, e.enrolled_at < period.end)
    acc: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for cohort, group, n, won, reached, reached_won in session.execute(q).all():
        a = acc[str(cohort)]
        a[f"{group}_due"] += int(n)
        a[f"{group}_renewed"] += int(won)
        a["contacted_due"] += int(reached)
        a["contacted_renewed"] += int(reached_won)
    cohorts = [_row(cohort, acc[cohort]) for cohort in sorted(acc)]
    total = None
    if cohorts:
        sums: dict[str, int] = defaultdict(int)
        for a in acc.values():
            for key, value in a.items():
                sums[key] += value
        total = _row("all", sums)
    return RetentionReport(
        event=event,
        period=period.label if period else None,
        program=program,
        campaign=campaign,
        generated_at=at,
        runs=runs,
        cohorts=cohorts,
        total=total,
    )


def _row(cohort: str, a: dict[str, int]) -> CohortRow:
    td, tr = a.get("treatment_due", 0), a.get("treatment_renewed", 0)
    cd, cr = a.get("contacted_due", 0), a.get("contacted_renewed", 0)
    hd, hr = a.get("holdout_due", 0), a.get("holdout_renewed", 0)
    lift = stats.compare(tr, td, hr, hd)
    return CohortRow(
        cohort=cohort,
        treatment_due=td,
        treatment_renewed=tr,
        contacted_due=cd,
        contacted_renewed=cr,
        holdout_due=hd,
        holdout_renewed=hr,
        treatment_rate=ratio(tr, td),
        contacted_rate=ratio(cr, cd),
        holdout_rate=ratio(hr, hd),
        lift=lift,
        verdict=verdict(lift, verb="renews"),
    )
