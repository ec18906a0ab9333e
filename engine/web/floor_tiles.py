"""The wallboard's standards tiles: escalation rate against the 20% ceiling per team, cases
past the follow-up standard, callbacks due within the hour that no agent can take, and the
queue by team and campaign.

Every rule is the engine's: the escalation figures are `report agents`'s
(engine/calls/reporting.py agent_performance, with each program's dispositions, and its
ceiling rule), the follow-up breaches are `cases list --breaches`'s (engine/cases/views.py
breaches_of). What is the wallboard's own is who is *available*: an agent signed in to the
console (engine/web/floor.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.calls.reporting import ESCALATION_CEILING, agent_performance, over_escalation_ceiling
from engine.cases.states import ON_US
from engine.cases.views import breaches_of, owner_of
from engine.clock import ensure_utc
from engine.db.models import Agent, CallTask, Case, CaseEvent, Participant, Program
from engine.reports.agents import program_dispositions
from engine.settings import Settings

NO_TEAM = "(no team)"
CALLBACK_HORIZON = timedelta(hours=1)


@dataclass(frozen=True)
class EscalationRate:
    team: str  # a team, or "all teams"
    period: str  # "today" / "this week"
    escalations: int
    contacts: int
    rate: float | None
    over_ceiling: bool


@dataclass(frozen=True)
class LateCase:
    case_id: int
    external_id: str
    category: str
    owner: str  # "team escalations", "agent ana", "unassigned"
    due: datetime  # when the follow-up attempt was due


@dataclass(frozen=True)
class StrandedCallback:
    task_id: int
    external_id: str
    due_at: datetime
    why: str  # "ana is signed out", "nobody of team renewals is signed in"


@dataclass(frozen=True)
class QueueDepth:
    team: str
    campaign: str
    open_due: int


@dataclass(frozen=True)
class Tiles:
    ceiling: float
    escalations: list[EscalationRate]
    late_cases: list[LateCase]
    stranded_callbacks: list[StrandedCallback]
    queue: list[QueueDepth]
    week_start: datetime

    @property
    def teams_over_ceiling(self) -> list[EscalationRate]:
        return [r for r in self.escalations if r.over_ceiling]


def _local_midnight(day: datetime, zone: ZoneInfo) -> datetime:
    return datetime.combine(day.date(), time(0), tzinfo=zone)


def escalation_rates(
    session: Session, settings: Settings, *, at: datetime, zone: str
) -> list[EscalationRate]:
    """Escalations / contacts today and this week (Monday on), per team of the agents who
    logged the calls (an agent on two teams counts in both) and for all teams together."""
    tz = ZoneInfo(zone)
    today = _local_midnight(at.astimezone(tz), tz)
    week = today - timedelta(days=today.weekday())
    teams = {a.login: list(a.teams or []) or [NO_TEAM] for a in session.scalars(select(Agent))}
    dispositions = program_dispositions(session, settings, None)
    rows: list[EscalationRate] = []
    periods = (
        ("today", today, today + timedelta(days=1)),
        ("this week", week, week + timedelta(days=7)),
    )
    for period, start, end in periods:
        # The whole day / week: a call logged this very instant counts.
        figures = agent_performance(session, start=start, end=end, at=at, dispositions=dispositions)
        sums: dict[str, list[int]] = {}
        for f in figures:
            for team in ["all teams", *teams.get(f.agent, [NO_TEAM])]:
                total = sums.setdefault(team, [0, 0])
                total[0] += f.escalations
                total[1] += f.contacts
        for team, (escalations, contacts) in sorted(sums.items(), key=_all_first):
            rows.append(
                EscalationRate(
                    team,
                    period,
                    escalations,
                    contacts,
                    round(escalations / contacts, 4) if contacts else None,
                    over_escalation_ceiling(escalations, contacts),
                )
            )
    return rows


def _all_first(item: tuple[str, list[int]]) -> tuple[bool, str]:
    return (item[0] != "all teams", item[0])


def late_cases(session: Session, *, at: datetime) -> list[LateCase]:
    """Cases on us now (open or waiting on us) whose next follow-up attempt is past the
    standard and still not made: a breach still running, oldest first."""
    rows = session.execute(
        select(Case, Program.timezone, Participant.external_id)
        .join(Program, Program.id == Case.program_id)
        .join(Participant, Participant.id == Case.participant_id)
        .where(Case.status.in_(sorted(ON_US)))
        .order_by(Case.id)
    ).all()
    events: dict[int, list[CaseEvent]] = {}
    ids = [case.id for case, _, _ in rows]
    for i in range(0, len(ids), 500):
        for event in session.scalars(
            select(CaseEvent)
            .where(CaseEvent.case_id.in_(ids[i : i + 500]))
            .order_by(CaseEvent.at, CaseEvent.id)
        ):
            events.setdefault(event.case_id, []).append(event)
    found = []
    for case, zone, external_id in rows:
        running = [
            b
            for b in breaches_of(case, events.get(case.id, []), zone, at)
            if b.kind == "gap" and b.until is None
        ]
        if running:
            found.append(
                LateCase(case.id, external_id, case.category, owner_of(case), running[-1].due)
            )
    return sorted(found, key=lambda c: c.due)


def stranded_callbacks(
    session: Session, *, at: datetime, signed_in: set[str]
) -> list[StrandedCallback]:
    """Open callbacks due within the hour (or already past due) that nobody signed in may
    take: an agent-only callback whose agent is signed out or disabled, a team's callback
    when nobody of the team is signed in (a callback with no team: nobody at all)."""
    agents = {a.login: a for a in session.scalars(select(Agent))}
    present_teams = {
        team for login in signed_in if login in agents for team in agents[login].teams or []
    }
    rows = session.execute(
        select(CallTask, Participant.external_id)
        .join(Participant, Participant.id == CallTask.participant_id)
        .where(
            CallTask.kind == "callback",
            CallTask.status == "open",
            CallTask.due_at <= at + CALLBACK_HORIZON,
        )
        .order_by(CallTask.due_at, CallTask.id)
    ).all()
    found = []
    for task, external_id in rows:
        why = None
        if task.assigned_agent is not None:
            agent = agents.get(task.assigned_agent)
            if agent is None or not agent.active:
                why = f"{task.assigned_agent} is disabled"
            elif task.assigned_agent not in signed_in:
                why = f"{task.assigned_agent} is signed out"
        elif task.team is None:
            why = None if signed_in else "no agent is signed in"
        elif task.team not in present_teams:
            why = f"nobody of team {task.team} is signed in"
        if why is not None:
            found.append(StrandedCallback(task.id, external_id, ensure_utc(task.due_at), why))
    return found


def queue_by_team_and_campaign(session: Session, *, at: datetime) -> list[QueueDepth]:
    """Open tasks due now, by team and campaign."""
    return [
        QueueDepth(team or NO_TEAM, campaign or "(none)", int(n))
        for team, campaign, n in session.execute(
            select(CallTask.team, CallTask.campaign, func.count())
            .where(CallTask.status == "open", CallTask.due_at <= at)
            .group_by(CallTask.team, CallTask.campaign)
            .order_by(CallTask.team, CallTask.campaign)
        ).all()
    ]


def tiles(session: Session, settings: Settings, *, at: datetime, signed_in: set[str]) -> Tiles:
    at = ensure_utc(at)
    zone = settings.default_timezone
    tz = ZoneInfo(zone)
    today = _local_midnight(at.astimezone(tz), tz)
    return Tiles(
        ceiling=ESCALATION_CEILING,
        escalations=escalation_rates(session, settings, at=at, zone=zone),
        late_cases=late_cases(session, at=at),
        stranded_callbacks=stranded_callbacks(session, at=at, signed_in=signed_in),
        queue=queue_by_team_and_campaign(session, at=at),
        week_start=today - timedelta(days=today.weekday()),
    )
