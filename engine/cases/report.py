"""The root-cause section of `campaign report complaints`: cases by category and root cause.

Over the period (cases opened in it): opened, resolved (so far), overdue (resolved after
their due time, or past it and still being worked at the report's time), reopened (at least
once); time to resolve in business hours (program clock), median and 90th percentile
(nearest rank) of the cases resolved; and the ten most recent summaries per root cause. A
case not resolved yet has the root cause ``(unresolved)``.

Kept apart from the complaint-disposition counts (engine/reports/agents.py) so each can
change alone; the CLI shows both.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.calls.standards import business_hours_between
from engine.cases.states import ACTIVE
from engine.clock import ensure_utc
from engine.db.models import Case, Program
from engine.reports.common import Chart, Table

UNRESOLVED = "(unresolved)"
RECENT_SUMMARIES = 10


def nearest_rank(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile (0 < share <= 1) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(share * len(ordered))) - 1]


@dataclass(frozen=True)
class RootCauseRow:
    category: str
    root_cause: str
    opened: int
    resolved: int
    overdue: int
    reopened: int
    median_hours_to_resolve: float | None
    p90_hours_to_resolve: float | None


@dataclass(frozen=True)
class Summary:
    case_id: int
    opened_at: datetime
    category: str
    summary: str | None
    resolution: str | None


@dataclass(frozen=True)
class RootCauseReport:
    period: str
    rows: list[RootCauseRow]
    recent: dict[str, list[Summary]] = field(default_factory=dict)

    def tables(self) -> list[Table]:
        columns = ["category", "root cause", "opened", "resolved", "overdue", "reopened",
                   "median h to resolve", "p90 h to resolve"]  # fmt: skip
        rows = [
            (r.category, r.root_cause, r.opened, r.resolved, r.overdue, r.reopened,
             _hours(r.median_hours_to_resolve), _hours(r.p90_hours_to_resolve))
            for r in self.rows
        ]  # fmt: skip
        tables = [
            Table(
                f"Cases by category and root cause, opened {self.period}",
                columns,
                rows,
                note="time to resolve in business hours (Mon-Fri 09:00-17:00, program clock)",
            )
        ]
        for cause, items in self.recent.items():
            tables.append(
                Table(
                    f"Most recent cases with root cause {cause}",
                    ["case", "opened", "category", "summary", "resolution"],
                    [
                        (
                            s.case_id,
                            s.opened_at.date().isoformat(),
                            s.category,
                            s.summary or "",
                            s.resolution or "",
                        )
                        for s in items
                    ],
                )
            )
        return tables

    def charts(self) -> list[Chart]:
        data: dict[str, dict[str, float]] = defaultdict(dict)
        for r in self.rows:
            data[r.root_cause][r.category] = r.opened
        return [Chart("bars", "Cases opened by root cause", dict(data))] if data else []


def _hours(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def root_cause_report(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    at: datetime,
    label: str,
    program: str | None = None,
) -> RootCauseReport:
    """Cases opened in [start, end), as they stand at ``at`` (streamed, one pass)."""
    at = ensure_utc(at)
    query = (
        select(Case, Program.timezone)
        .join(Program, Program.id == Case.program_id)
        .where(Case.opened_at >= ensure_utc(start), Case.opened_at < ensure_utc(end))
        .order_by(Case.opened_at.desc(), Case.id.desc())
        .execution_options(yield_per=1000)
    )
    if program is not None:
        query = query.where(Program.key == program)
    counts: dict[tuple[str, str], dict[str, Any]] = {}
    recent: dict[str, list[Summary]] = defaultdict(list)
    for case, zone in session.execute(query):
        cause = case.root_cause if case.status not in ACTIVE and case.root_cause else UNRESOLVED
        group = counts.setdefault(
            (case.category, cause),
            {"opened": 0, "resolved": 0, "overdue": 0, "reopened": 0, "hours": []},
        )
        group["opened"] += 1
        resolved_at = case.resolved_at if cause != UNRESOLVED else None
        if resolved_at is not None:
            group["resolved"] += 1
            group["hours"].append(business_hours_between(case.opened_at, resolved_at, zone))
        if (resolved_at or at) > case.due_at:
            group["overdue"] += 1
        if case.reopened:
            group["reopened"] += 1
        if len(recent[cause]) < RECENT_SUMMARIES:
            recent[cause].append(
                Summary(case.id, case.opened_at, case.category, case.summary, case.resolution)
            )
    rows = [
        RootCauseRow(
            category,
            cause,
            g["opened"],
            g["resolved"],
            g["overdue"],
            g["reopened"],
            nearest_rank(g["hours"], 0.5),
            nearest_rank(g["hours"], 0.9),
        )
        for (category, cause), g in sorted(counts.items())
    ]
    return RootCauseReport(label, rows, dict(sorted(recent.items())))


@dataclass(frozen=True)
class ComplaintsWithCases:
    """`report complaints`: the complaint dispositions (``complaints``, its own report) and the
    cases' root causes, side by side; JSON keeps the first's keys and adds ``cases``."""

    complaints: Any
    cases: RootCauseReport

    def tables(self) -> list[Table]:
        return [*self.complaints.tables(), *self.cases.tables()]

    def charts(self) -> list[Chart]:
        return [*self.complaints.charts(), *self.cases.charts()]

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self.complaints), "cases": asdict(self.cases)}


def with_root_causes(
    session: Session, complaints: Any, *, at: datetime, period: Any, program: str | None
) -> ComplaintsWithCases:
    """``complaints`` (the disposition counts) with the root-cause section over the same
    period (default: the last 30 days)."""
    from engine.reports.agents import DEFAULT_DAYS

    if period is not None:
        start, end, label = period.start, period.end, period.label
    else:
        start, end, label = at - timedelta(days=DEFAULT_DAYS), at, f"last {DEFAULT_DAYS} days"
    section = root_cause_report(session, start=start, end=end, at=at, label=label, program=program)
    return ComplaintsWithCases(complaints, section)
