"""`campaign report agents`: the call-centre report (complaints: engine/reports/complaints.py).

The figures come from helper CALLS's query functions (engine/calls/reporting.py, documented
there and in docs/calls.md): per agent over the period, calls made, right-party contacts,
contact rate, conversions, conversions per contact, average handle time, verification rate,
callbacks kept on time, follow-up standard compliance (<= 8 business hours, >= 2 attempts),
escalation rate against the 20% ceiling, and calls against the calling plan (daily, weekly,
monthly targets, each set for the agent or derived from the daily one). This module only
frames them for the renderers (tables, charts).

``--program KEY``, ``--campaign NAME`` (and ``--agent`` for the agents report) narrow every
figure to the calls of that program / campaign; the queries filter the caller log in SQL.
Each program's calls are read with that program's dispositions, so the unfiltered figures are
the sums of the per-program (and, for counts, per-campaign) ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.calls.config import load_dispositions
from engine.calls.idle import LIFETIME, Idle, idle_times
from engine.calls.pauses import PauseTotal, pause_totals
from engine.calls.reporting import (
    ESCALATION_CEILING,
    AgentPerformance,
    CallingPlan,
    CampaignPlan,
    Dispositions,
    LanguageCalls,
    agent_performance,
    calling_plan,
    calls_by_language,
    campaign_calling_plans,
)
from engine.calls.rules import AtRisk, CallRules, callbacks_at_risk
from engine.db.models import Program
from engine.errors import NotFoundError
from engine.reports.common import (
    Chart,
    Period,
    Table,
    check_campaign,
    filters_label,
    pct,
    program_id,
)
from engine.settings import Settings

DEFAULT_DAYS = 30
IDLE_LEGEND = (
    "Idle: signed in to the console (sign-in to sign-out, or to the session's end "
    f"{LIFETIME.total_seconds() / 3600:.0f} h after sign-in) "
    "and neither on a call (each logged call from its claim to its log, and the claim held "
    "now) nor paused. Based on the console's sign-ins, the caller log, the live claim and "
    "the pauses; a claim released or left to expire without a log counts as idle; an agent "
    "working only from the terminal has no sign-in, so no row."
)


def call_window(period: Period | None, at: datetime) -> tuple[datetime, datetime, str]:
    if period is not None:
        return period.start, period.end, period.label
    return at - timedelta(days=DEFAULT_DAYS), at, f"last {DEFAULT_DAYS} days"


def check_filters(session: Session, program: str | None, campaign: str | None) -> None:
    """An unknown program or campaign is an error naming it, not an empty report."""
    program_id(session, program)
    check_campaign(session, campaign, program=program)


def program_dispositions(session: Session, settings: Settings, program: str | None) -> Dispositions:
    """Each program's own set (a dispositions file may add codes per program)."""
    if settings.dispositions_file is None:
        return load_dispositions(None)
    keys = [program] if program is not None else list(session.scalars(select(Program.key)))
    return {key: load_dispositions(settings.dispositions_file, key) for key in keys}


@dataclass(frozen=True)
class AgentsReport:
    period: str
    start: datetime
    end: datetime
    agents: list[AgentPerformance]
    plans: list[CallingPlan]
    campaign_plans: list[CampaignPlan] = field(default_factory=list)
    program: str | None = None
    campaign: str | None = None
    agent: str | None = None
    callbacks_at_risk: list[AtRisk] = field(default_factory=list)
    by_language: list[LanguageCalls] = field(default_factory=list)
    pauses: list[PauseTotal] = field(default_factory=list)
    idle: list[Idle] = field(default_factory=list)

    def tables(self) -> list[Table]:
        scope = filters_label(program=self.program, campaign=self.campaign, agent=self.agent)
        risk_rows = [
            (r.task_id, r.external_id, r.agent, r.agent_state, r.team or "", r.campaign or "",
             r.due_at.isoformat(timespec="minutes"),
             "served to the team" if r.fallen_back
             else f"to the team at {r.falls_back_at.isoformat(timespec='minutes')}")
            for r in self.callbacks_at_risk
        ]  # fmt: skip
        narrowed = self.program is not None or self.campaign is not None
        rows = [
            (a.agent, a.calls, a.contacts, pct(a.contact_rate), a.conversions,
             pct(a.conversions_per_contact),
             "" if a.average_handle_seconds is None else f"{a.average_handle_seconds:.0f}",
             pct(a.verification_rate), f"{a.callbacks_kept}/{a.callbacks_due}",
             f"{a.follow_ups_on_time}/{a.follow_ups_due}"
             + (f" (+{a.follow_ups_pending} pending)" if a.follow_ups_pending else "")
             + (f" ({a.follow_ups_impossible} impossible in the calling window)"
                if a.follow_ups_impossible else ""),
             a.follow_ups_breached,
             pct(a.escalation_rate),
             "NOT BELOW 20%" if a.over_escalation_ceiling else "ok")
            for a in self.agents
        ]  # fmt: skip
        plan_rows = [
            (p.agent, f.period, f"{f.start}..{f.end}", f.calls, f.target, f.target_source,
             pct(f.attainment))
            for p in self.plans
            for f in p.figures
        ]  # fmt: skip
        campaign_rows = [
            (p.campaign, f.period, f"{f.start}..{f.end}", f.calls, f.target, pct(f.attainment))
            for p in self.campaign_plans
            for f in p.figures
        ]
        return [
            Table(
                f"Agents, {self.period}{scope}",
                ["agent", "calls", "right-party contacts", "contact rate", "conversions",
                 "conversion per contact", "avg handle s", "verification rate",
                 "callbacks kept", "follow-ups on time", "follow-up breaches",
                 "escalation rate", "ceiling"],
                rows,
            ),
            Table(
                f"Calls vs calling plan (day, week, month of the period's last day){scope}",
                ["agent", "plan", "dates", "calls", "target", "target from", "attainment"],
                plan_rows,
                note="Only the calls of the program / campaign count; the targets are each "
                "agent's whole plan."
                if narrowed
                else None,
            ),
            Table(
                "Campaign calls vs the campaign's calling plan (all agents)"
                + filters_label(program=self.program, campaign=self.campaign),
                ["campaign", "plan", "dates", "calls", "target", "attainment"],
                campaign_rows,
            ),
            Table(
                "Callbacks at risk (agent-only, past due, not taken; now)" + scope,
                ["task", "member", "agent", "agent state", "team", "campaign", "due",
                 "fallback"],
                risk_rows,
            ),
            Table(
                f"Calls by the member's language, {self.period}{scope}",
                ["agent", "language", "calls", "right-party contacts", "contact rate"],
                [(r.agent, r.language, r.calls, r.contacts, pct(r.contacts / r.calls))
                 for r in self.by_language],
            ),
            Table(
                f"Paused time by code, {self.period}" + filters_label(agent=self.agent),
                ["agent", "code", "pauses", "minutes"],
                [(p.agent, p.code, p.pauses, f"{p.seconds / 60:.0f}") for p in self.pauses],
                note="Neither talk (handle) time nor idle time: an agent cannot pause while "
                "holding a call." + (" Pauses belong to no program or campaign." if narrowed
                                     else ""),
            ),
            Table(
                f"Idle time, {self.period}" + filters_label(agent=self.agent),
                ["agent", "signed-in minutes", "idle minutes", "idle share", "idle now since"],
                [(i.agent, f"{i.signed_in_seconds / 60:.0f}", f"{i.idle_seconds / 60:.0f}",
                  pct(i.idle_seconds / i.signed_in_seconds) if i.signed_in_seconds else "-",
                  i.idle_since.isoformat(timespec="minutes") if i.idle_since else "")
                 for i in self.idle],
                note=IDLE_LEGEND + (" Idle time belongs to no program or campaign."
                                    if narrowed else ""),
            ),
        ]  # fmt: skip

    def charts(self) -> list[Chart]:
        return [
            Chart(
                "bars",
                "Agent comparison",
                {
                    a.agent: {
                        "calls": a.calls,
                        "contacts": a.contacts,
                        "conversions": a.conversions,
                    }
                    for a in self.agents
                },
            ),
            Chart(
                "bars",
                "Rates by agent",
                {
                    a.agent: {
                        "contact rate": a.contact_rate or 0.0,
                        "verification": a.verification_rate or 0.0,
                        "follow-up compliance": a.follow_up_compliance or 0.0,
                    }
                    for a in self.agents
                },
                unit="percent",
            ),
            Chart(
                "bars",
                f"Escalation rate by agent (standard: below {pct(ESCALATION_CEILING, 0)})",
                {a.agent: {"escalation rate": a.escalation_rate or 0.0} for a in self.agents},
                unit="percent",
                markers={f"ceiling {pct(ESCALATION_CEILING, 0)}": ESCALATION_CEILING},
            ),
        ]


def agents_report(
    session: Session,
    *,
    at: datetime,
    settings: Settings,
    period: Period | None = None,
    program: str | None = None,
    campaign: str | None = None,
    agent: str | None = None,
) -> AgentsReport:
    check_filters(session, program, campaign)
    start, end, label = call_window(period, at)
    rows = agent_performance(
        session,
        start=start,
        end=end,
        at=at,
        dispositions=program_dispositions(session, settings, program),
        agent=agent,
        program=program,
        campaign=campaign,
    )
    last_day = (min(end, at) - timedelta(microseconds=1)).date()
    plans = []
    for row in rows:
        try:
            plans.append(
                calling_plan(session, row.agent, day=last_day, program=program, campaign=campaign)
            )
        except NotFoundError:
            continue  # calls imported from a dialer for someone with no agent record
    campaign_plans = campaign_calling_plans(
        session, day=last_day, program=program, campaign=campaign
    )
    at_risk = callbacks_at_risk(
        session,
        at=at,
        rules=CallRules.from_settings(settings),
        program=program,
        campaign=campaign,
        agent=agent,
    )
    by_language = calls_by_language(
        session, start=start, end=end, agent=agent, program=program, campaign=campaign
    )
    pauses = pause_totals(session, start=start, end=min(end, at), at=at, agent=agent)
    idle = idle_times(session, start=start, end=end, at=at, agents=[agent] if agent else None)
    return AgentsReport(
        label, start, end, rows, plans, campaign_plans, program, campaign, agent, at_risk,
        by_language, pauses, sorted(idle.values(), key=lambda i: i.agent),
    )  # fmt: skip
