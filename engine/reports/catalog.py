"""The manager's reports, each declared once: its filters, how it is built, its title and the
"Generated ..." line under it. `campaign report NAME` (engine/cli/report.py) makes its
arguments and options from these filters, and the console's `/reports` (engine/web/reports.py)
its form, so both take the same filters, build the same report and render it with the same
renderers (engine/reports/render.py).

The report modules are imported when a report is built, not here: the CLI reads this module
(for --help) at start-up."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.errors import InputError
from engine.reports.period import PERIOD_HELP

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from engine.reports.period import Period
    from engine.settings import Settings


@dataclass(frozen=True)
class Filter:
    """One filter of a report: a `--NAME` option of the command (or its argument, when
    ``argument`` is its metavar) and a field of the console's form."""

    name: str
    help: str
    choices: tuple[str, ...] = ()
    default: str | None = None
    argument: str | None = None  # a required argument shown as this metavar

    def check(self, value: str) -> str:
        """``value`` if it is allowed, else click's own words for a bad choice (the console
        reads the filters from a URL; the CLI has click check them)."""
        if self.choices and value not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            raise InputError(
                f"Invalid value for '--{self.name}': {value!r} is not one of {allowed}."
            )
        return value


# The filters every report takes, after its own.
PERIOD = Filter("period", PERIOD_HELP)
PROGRAM = Filter("program", "Only this program (key).")
COMMON_FILTERS = (PERIOD, PROGRAM)


@dataclass(frozen=True)
class ReportRequest:
    """What every report is asked, parsed once; its build function gets this and the values
    of the report's own filters."""

    session: Session
    at: datetime
    period: Period | None
    program: str | None
    settings: Settings


@dataclass(frozen=True)
class ReportSpec:
    name: str
    help: str  # the command's --help and the console's description
    filters: tuple[Filter, ...]  # its own, in the order --help lists them
    build: Callable[..., Any]  # (ReportRequest, **own filters) -> report
    title: Callable[[Any], str]
    shown: tuple[str, ...] = ()  # own filters the "Generated" line names after period, program
    more_meta: Callable[[Any], str] | None = None  # what that line adds about the report


@dataclass(frozen=True)
class BuiltReport:
    """A report (an object with tables() and charts(), perhaps verdicts()) ready to render."""

    report: Any
    title: str
    meta: str


def build(
    spec: ReportSpec,
    session: Session,
    settings: Settings,
    *,
    at: datetime,
    period: str | None,
    program: str | None,
    own: Mapping[str, Any],
) -> BuiltReport:
    """Build report ``spec`` with these filter values; an InputError or NotFoundError says
    which value is wrong, in the words `campaign report` uses."""
    from engine.reports.period import parse_period

    named = {"period": period, "program": program, **{key: own.get(key) for key in spec.shown}}
    filters = ", ".join(f"{k} {v}" for k, v in named.items() if v)
    meta = f"Generated {at.isoformat(timespec='seconds')}" + (f"; {filters}" if filters else "")
    request = ReportRequest(session, at, parse_period(period, at=at), program, settings)
    report = spec.build(request, **own)
    if spec.more_meta is not None:
        meta = f"{meta}; {spec.more_meta(report)}"
    return BuiltReport(report, spec.title(report), meta)


def _runs_label(runs: Sequence[int]) -> str:
    """'1 run (id 7)' or '12 runs (ids 3 to 41)'."""
    if len(runs) == 1:
        return f"1 run (id {runs[0]})"
    return f"{len(runs):,} runs (ids {min(runs)} to {max(runs)})"


# --------------------------------------------------------------------------- the reports


def _campaign(request: ReportRequest, target: str) -> Any:
    from engine.reports.campaign import campaign_report

    return campaign_report(request.session, target, period=request.period, program=request.program)


def _deliverability(request: ReportRequest, campaign: str | None) -> Any:
    from engine.reports.deliverability import deliverability_report

    return deliverability_report(
        request.session,
        at=request.at,
        period=request.period,
        program=request.program,
        campaign=campaign,
    )


def _retention(request: ReportRequest, campaign: str | None, event: str) -> Any:
    from engine.reports.retention import retention_report

    return retention_report(
        request.session,
        at=request.at,
        event=event,
        period=request.period,
        program=request.program,
        campaign=campaign,
    )


def _agents(request: ReportRequest, agent: str | None, campaign: str | None) -> Any:
    from engine.reports.agents import agents_report

    return agents_report(
        request.session,
        at=request.at,
        settings=request.settings,
        period=request.period,
        program=request.program,
        campaign=campaign,
        agent=agent,
    )


def _complaints(request: ReportRequest, by: str, campaign: str | None) -> Any:
    from engine.cases.report import with_root_causes
    from engine.reports.complaints import complaints_report

    report = complaints_report(
        request.session,
        at=request.at,
        settings=request.settings,
        period=request.period,
        program=request.program,
        campaign=campaign,
        by=by,
    )
    # The cases' root causes (engine/cases/report.py): a section of its own.
    return with_root_causes(
        request.session, report, at=request.at, period=request.period, program=request.program
    )


REPORTS: tuple[ReportSpec, ...] = (
    ReportSpec(
        "campaign",
        help="""Did campaign NAME (all its runs, or run RUN_ID) work: funnel per step and
    channel, skips by reason, conversion of treatment vs holdout with absolute and relative
    lift (95% intervals, p-value) and a verdict in words, time to convert, points and revenue,
    A/B variants.""",
        filters=(
            Filter("target", "The campaign's name, or one run's id.", argument="NAME|RUN_ID"),
        ),
        build=_campaign,
        title=lambda report: f"Campaign report: {report.campaign}",
        more_meta=lambda report: _runs_label(report.runs),
    ),
    ReportSpec(
        "deliverability",
        help="""Sent, delivered, bounced, failed, opens, clicks, opt-outs, spam reports and
    suppressions, by channel.""",
        filters=(Filter("campaign", "Only messages of this campaign."),),
        build=_deliverability,
        title=lambda report: "Deliverability",
        shown=("campaign",),
    ),
    ReportSpec(
        "retention",
        help="""Renewals due vs renewed and the retention rate by cohort (month of enrollment),
    treatment, contacted and holdout, with the lift over holdout.""",
        filters=(
            Filter("campaign", "Only runs of this campaign."),
            Filter("event", "The goal event that means renewed.", default="renewal"),
        ),
        build=_retention,
        title=lambda report: "Retention",
        shown=("campaign",),
    ),
    ReportSpec(
        "agents",
        help="""Agent performance [default period: the last 30 days]: calls, right-party
    contacts, contact rate, conversions, handle time, verification, callbacks kept, follow-up
    standard, escalations against the 20% ceiling, calls vs calling-plan targets. --program and
    --campaign narrow every figure to those calls.""",
        filters=(
            Filter("agent", "Only this agent (login)."),
            Filter("campaign", "Only calls of this campaign."),
        ),
        build=_agents,
        title=lambda report: "Agents",
        shown=("campaign", "agent"),
    ),
    ReportSpec(
        "complaints",
        help="""Complaints by category over time, then each complaint under its category with
    the member, agent and summary (calls with a complaint disposition and imported `complaint`
    events, those only without --campaign), and the cases' root causes: cases opened,
    resolved, overdue and reopened by category and root cause, time to resolve (median, 90th
    percentile) and the ten most recent summaries per root cause [default period: the last 30
    days].""",
        filters=(
            Filter("by", "Time bucket.", choices=("day", "week", "month"), default="week"),
            Filter("campaign", "Only calls of this campaign."),
        ),
        build=_complaints,
        title=lambda report: "Complaints",
        shown=("campaign", "by"),
    ),
)
BY_NAME = {spec.name: spec for spec in REPORTS}
