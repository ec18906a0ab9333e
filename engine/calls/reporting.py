"""The queries over the call tables that the agent and complaint reports read.

Definitions (docs/calls.md has the same):

- calls made: caller-log entries by the agent in the period;
- right-party contacts: entries whose disposition reached a human (WRONG_NUMBER does not);
- contact rate = contacts / calls; conversions per contact = conversions / contacts;
- verification rate: entries with verified = yes over entries that recorded the flag;
- callbacks kept on time: callbacks the agent scheduled, due before the end of the period,
  that were attempted (claimed, else logged) no later than ``CALLBACK_GRACE`` after their time;
- follow-up compliance: the agent's no-contact attempts whose task was tried again within
  the campaign's follow-up standard (8 business hours by default); an attempt whose task
  closed is not counted, one still inside its allowance is pending; one the member's calling
  window left no chance to retry within the standard is *impossible*, counted apart (not a
  breach, not in the compliance rate);
- escalation rate = escalations / contacts, against the standard "below 20%": a rate of
  exactly 20% misses it and is flagged;
- calling plan: calls against the agent's daily, weekly and monthly targets (a weekly or
  monthly target the agent has none set for is the daily one times the business days of the
  week or month: Monday to Friday, or the working days of the program's holiday calendar;
  ``target_source`` says which), and each
  campaign's calls against its own ``calling_plan`` targets (daily, weekly, monthly; all agents
  together, in the program's zone).

Every query takes the same optional scope, applied in SQL to the caller log (whose entries
carry the program key and the campaign name of their task): ``program``, ``campaign`` and
``agent``. A callback or follow-up is judged from the scoped entry that owed it, so it falls
in the scope of that entry (the tasks it spawns keep the campaign). ``dispositions`` is one
set, or one per program key (programs may add their own codes); the scope never changes what
a code means, so the unscoped figures are the sums of the figures of each program or campaign.
"""

from __future__ import annotations

import calendar
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Protocol, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, and_, bindparam, case, false, func, or_, select
from sqlalchemy.orm import Session

from engine.calls.agents import get_agent
from engine.calls.business_days import is_business_day
from engine.calls.dispositions import DispositionSet
from engine.calls.standards import (
    FollowUpStandard,
    business_hours_between,
    first_chance,
    standard_deadline,
    standard_for,
)
from engine.calls.tasks import DefinitionCache
from engine.clock import ensure_utc
from engine.db.models import CallerLogEntry, CallTask, CampaignRun, Participant, Program
from engine.locales import primary_language

ESCALATION_CEILING = 0.20
CALLBACK_GRACE = timedelta(minutes=15)


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def over_escalation_ceiling(escalations: int, contacts: int) -> bool:
    """The standard is "below 20%": exactly 20% is flagged (rounded so that float error
    cannot hide 1 in 5). No contacts: nothing to flag."""
    return contacts > 0 and round(escalations / contacts, 9) >= ESCALATION_CEILING


@dataclass(frozen=True)
class AgentPerformance:
    agent: str
    calls: int
    contacts: int
    contact_rate: float | None
    conversions: int
    conversions_per_contact: float | None
    average_handle_seconds: float | None
    verified: int
    verification_asked: int
    verification_rate: float | None
    callbacks_due: int
    callbacks_kept: int
    callbacks_kept_rate: float | None
    follow_ups_due: int
    follow_ups_on_time: int
    follow_ups_pending: int
    follow_ups_breached: int  # due and not retried within the standard: due - on time
    follow_up_compliance: float | None
    escalations: int
    escalation_rate: float | None
    escalation_ceiling: float = ESCALATION_CEILING
    over_escalation_ceiling: bool = False
    by_disposition: dict[str, int] = field(default_factory=dict)
    # Retries the calling window made impossible within the standard (not breaches).
    follow_ups_impossible: int = 0


# One disposition set for every program, or one per program key (others: the standard set).
Dispositions = DispositionSet | Mapping[str, DispositionSet]


def _effects(dispositions: Dispositions | None) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """(code -> effect) for entries of any program, and per program key where it differs."""
    if dispositions is None or isinstance(dispositions, DispositionSet):
        return {d.code: d.effect for d in dispositions or DispositionSet.standard()}, {}
    default = {d.code: d.effect for d in DispositionSet.standard()}
    return default, {key: {d.code: d.effect for d in ds} for key, ds in dispositions.items()}


_Query = TypeVar("_Query", bound=Select)  # any number of columns


def _scoped(
    query: _Query,
    *,
    program: str | None = None,
    campaign: str | None = None,
    agent: str | None = None,
) -> _Query:
    """Only the caller-log entries of ``program`` (key), ``campaign`` and ``agent``."""
    if program is not None:
        query = query.where(CallerLogEntry.program == program)
    if campaign is not None:
        query = query.where(CallerLogEntry.campaign == campaign)
    if agent is not None:
        query = query.where(CallerLogEntry.agent == agent)
    return query


def _entries(
    session: Session,
    start: datetime,
    end: datetime,
    *,
    program: str | None = None,
    campaign: str | None = None,
    agent: str | None = None,
    where: ColumnElement[bool] | None = None,
) -> list[CallerLogEntry]:
    query = select(CallerLogEntry).where(
        CallerLogEntry.logged_at >= start, CallerLogEntry.logged_at < end
    )
    if where is not None:
        query = query.where(where)
    query = _scoped(query, program=program, campaign=campaign, agent=agent)
    return list(session.scalars(query.order_by(CallerLogEntry.seq)))


@dataclass(frozen=True)
class LanguageCalls:
    agent: str
    language: str  # the member's language (zh for zh-Hant-TW), "unknown" without a locale
    calls: int
    contacts: int  # right-party contacts


def calls_by_language(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    agent: str | None = None,
    program: str | None = None,
    campaign: str | None = None,
) -> list[LanguageCalls]:
    """Calls logged in [start, end) per agent and language of the member called (their locale
    now; an erased member's is unknown), by agent then most calls."""
    query = (
        select(
            CallerLogEntry.agent,
            Participant.locale,
            func.count(),
            func.sum(case((CallerLogEntry.human_contact, 1), else_=0)),
        )
        .outerjoin(Participant, Participant.id == CallerLogEntry.participant_id)
        .where(
            CallerLogEntry.logged_at >= ensure_utc(start),
            CallerLogEntry.logged_at < ensure_utc(end),
        )
        .group_by(CallerLogEntry.agent, Participant.locale)
    )
    query = _scoped(query, program=program, campaign=campaign, agent=agent)
    totals: dict[tuple[str, str], list[int]] = {}
    login: str
    locale: str | None
    calls: int
    contacts: int | None
    for login, locale, calls, contacts in session.execute(query):
        figures = totals.setdefault((login, primary_language(locale) or "unknown"), [0, 0])
        figures[0] += int(calls)
        figures[1] += int(contacts or 0)
    rows = [LanguageCalls(login, lang, c, h) for (login, lang), (c, h) in totals.items()]
    return sorted(rows, key=lambda r: (r.agent, -r.calls, r.language))


def agent_performance(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    at: datetime,
    dispositions: Dispositions | None = None,
    agent: str | None = None,
    program: str | None = None,
    campaign: str | None = None,
) -> list[AgentPerformance]:
    """One row per agent who logged calls in [start, end) (or just ``agent``), as of ``at``;
    only the calls of ``program`` (key) and ``campaign`` when given."""
    start, end, at = ensure_utc(start), ensure_utc(end), ensure_utc(at)
    default, by_program = _effects(dispositions)
    entries = _entries(session, start, end, program=program, campaign=campaign, agent=agent)
    clocks = {
        key: (zone, calendar)
        for key, zone, calendar in session.execute(
            select(Program.key, Program.timezone, Program.holidays)
        )
    }
    cache = DefinitionCache(session)
    by_agent: dict[str, list[CallerLogEntry]] = {}
    for e in entries:
        by_agent.setdefault(e.agent, []).append(e)

    def effect(e: CallerLogEntry) -> str | None:
        return by_program.get(e.program, default).get(e.disposition)

    rows = []
    for login, mine in sorted(by_agent.items()):
        calls = len(mine)
        contacts = sum(1 for e in mine if e.human_contact)
        conversions = sum(1 for e in mine if effect(e) == "conversion")
        handles = [e.handle_seconds for e in mine if e.handle_seconds is not None]
        asked = [e for e in mine if e.verified is not None]
        verified = sum(1 for e in asked if e.verified)
        escalations = sum(1 for e in mine if effect(e) == "escalate")
        cb_due, cb_kept = _callbacks(session, mine, effect, end)
        fu_due, fu_ok, fu_pending, fu_impossible = _follow_ups(
            session, mine, effect, at, clocks, cache
        )
        escalation_rate = _ratio(escalations, contacts)
        rows.append(
            AgentPerformance(
                agent=login,
                calls=calls,
                contacts=contacts,
                contact_rate=_ratio(contacts, calls),
                conversions=conversions,
                conversions_per_contact=_ratio(conversions, contacts),
                average_handle_seconds=round(sum(handles) / len(handles), 1) if handles else None,
                verified=verified,
                verification_asked=len(asked),
                verification_rate=_ratio(verified, len(asked)),
                callbacks_due=cb_due,
                callbacks_kept=cb_kept,
                callbacks_kept_rate=_ratio(cb_kept, cb_due),
                follow_ups_due=fu_due,
                follow_ups_on_time=fu_ok,
                follow_ups_pending=fu_pending,
                follow_ups_breached=fu_due - fu_ok,
                follow_up_compliance=_ratio(fu_ok, fu_due),
                escalations=escalations,
                escalation_rate=escalation_rate,
                over_escalation_ceiling=over_escalation_ceiling(escalations, contacts),
                by_disposition=dict(sorted(Counter(e.disposition for e in mine).items())),
                follow_ups_impossible=fu_impossible,
            )
        )
    return rows


def _callbacks(
    session: Session,
    mine: list[CallerLogEntry],
    effect: Callable[[CallerLogEntry], str | None],
    end: datetime,
) -> tuple[int, int]:
    parents = [e.task_id for e in mine if effect(e) == "callback" and e.task_id]
    if not parents:
        return 0, 0
    callbacks = session.scalars(
        select(CallTask).where(
            CallTask.parent_task_id.in_(parents), CallTask.kind == "callback", CallTask.due_at < end
        )
    ).all()
    kept = 0
    for cb in callbacks:
        first = session.scalar(
            select(CallerLogEntry)
            .where(CallerLogEntry.task_id == cb.id)
            .order_by(CallerLogEntry.seq)
            .limit(1)
        )
        if (
            first is not None
            and (first.claimed_at or first.logged_at) <= cb.due_at + CALLBACK_GRACE
        ):
            kept += 1
    return len(callbacks), kept


def _follow_ups(
    session: Session,
    mine: list[CallerLogEntry],
    effect: Callable[[CallerLogEntry], str | None],
    at: datetime,
    clocks: dict[str, tuple[str, str | None]],  # program key -> (zone, holiday calendar)
    cache: DefinitionCache,
) -> tuple[int, int, int, int]:
    due = ok = pending = impossible = 0

    def window_allowed(
        e: CallerLogEntry, allowance: float, zone: str, calendar: str | None
    ) -> bool:
        """Did the member's calling window open after ``e`` within the standard?"""
        from engine.calls.log import next_callable_for

        person = session.get(Participant, e.participant_id) if e.participant_id else None
        program = session.get(Program, person.program_id) if person else None
        if person is None or program is None:
            return True  # erased: nothing to say otherwise
        window = next_callable_for(person, program, cache.for_run(e.run_id))
        deadline = standard_deadline(
            e.logged_at, FollowUpStandard(allowance), zone, holidays=calendar
        )
        return first_chance(e.logged_at, deadline, window) is not None

    for e in mine:
        if effect(e) != "recycle" or e.task_id is None:
            continue
        allowance = standard_for(cache.for_run(e.run_id)).within_business_hours
        zone, calendar = clocks.get(e.program, ("UTC", None))
        following = session.scalar(
            select(CallerLogEntry)
            .where(CallerLogEntry.task_id == e.task_id, CallerLogEntry.seq > e.seq)
            .order_by(CallerLogEntry.seq)
            .limit(1)
        )
        if following is not None:
            when = following.claimed_at or following.logged_at
            taken = business_hours_between(e.logged_at, when, zone, holidays=calendar)
            if taken <= allowance + 1e-9:
                due += 1
                ok += 1
            elif window_allowed(e, allowance, zone, calendar):
                due += 1  # late: a breach
            else:
                impossible += 1
            continue
        task = session.get(CallTask, e.task_id)
        if task is None or task.status == "closed":
            continue  # closed (e.g. unreachable after max attempts): nothing was owed
        if business_hours_between(e.logged_at, at, zone, holidays=calendar) <= allowance:
            pending += 1
        elif window_allowed(e, allowance, zone, calendar):
            due += 1  # overdue: a breach
        else:
            impossible += 1
    return due, ok, pending, impossible


TARGET_SET = "set"


@dataclass(frozen=True)
class PlanFigure:
    period: str  # day / week / month
    start: date
    end: date  # inclusive
    calls: int
    target: int
    attainment: float | None
    # "set" (a target of its own) or how it was derived, e.g. "daily × 5 business days".
    target_source: str = TARGET_SET


@dataclass(frozen=True)
class CallingPlan:
    agent: str
    daily_target: int
    weekly_target: int | None  # None: derived from the daily target
    monthly_target: int | None
    figures: list[PlanFigure]
    by_campaign: dict[str, int]


def _business_days(first: date, last: date, calendar: str | None) -> int:
    days = (last - first).days + 1
    return sum(1 for i in range(days) if is_business_day(first + timedelta(days=i), calendar))


# Built once, bound when run: the agent's page asks for the plan on every load (#19). Two
# columns of the period's entries, not whole rows (their fields, notes and record): a month
# holds thousands of calls.
_PLAN_ENTRIES = select(CallerLogEntry.logged_at, CallerLogEntry.campaign).where(
    CallerLogEntry.logged_at >= bindparam("plan_start"),
    CallerLogEntry.logged_at < bindparam("plan_end"),
    CallerLogEntry.agent == bindparam("plan_agent"),
)
_PLAN_CALENDARS = select(Program.holidays).distinct()


def _plan_calendar(session: Session, program: str | None) -> str | None:
    """The holiday calendar an agent's derived targets count business days by: the program's
    when the plan is scoped to one; else the one every program names (agents work for all of
    them); else none (Monday to Friday)."""
    query = _PLAN_CALENDARS
    if program is not None:
        query = query.where(Program.key == program)
    calendars = set(session.scalars(query))
    return calendars.pop() if len(calendars) == 1 else None


def _periods(day: date) -> list[tuple[str, date, date]]:
    """The day, its week (Monday to Sunday) and its month, first and last day inclusive."""
    week_start = day - timedelta(days=day.weekday())
    month_start = day.replace(day=1)
    month_end = day.replace(day=calendar.monthrange(day.year, day.month)[1])
    return [
        ("day", day, day),
        ("week", week_start, week_start + timedelta(days=6)),
        ("month", month_start, month_end),
    ]


def calling_plan(
    session: Session,
    agent_login: str,
    *,
    day: date,
    program: str | None = None,
    campaign: str | None = None,
) -> CallingPlan:
    """Calls made by the agent on ``day``, in its week (Mon-Sun) and month, in the agent's
    zone, against the agent's targets: the daily one, and the weekly and monthly ones when set,
    else the daily one times the business days of the period (skipping the holidays of the
    program's calendar: :func:`_plan_calendar`). With ``program`` or ``campaign`` only those
    calls count; the targets stay the agent's whole plan."""
    return plan_of(
        session, get_agent(session, agent_login), day=day, program=program, campaign=campaign
    )


class PlanAgent(Protocol):
    """What a calling plan reads of an agent: an Agent row, or the columns of it the
    console reads with the signed-in user."""

    @property
    def login(self) -> str: ...
    @property
    def timezone(self) -> str: ...
    @property
    def daily_target(self) -> int: ...
    @property
    def weekly_target(self) -> int | None: ...
    @property
    def monthly_target(self) -> int | None: ...


def plan_of(
    session: Session,
    agent: PlanAgent,
    *,
    day: date,
    program: str | None = None,
    campaign: str | None = None,
) -> CallingPlan:
    """:func:`calling_plan` of an agent row already read (the console's page reads it with
    the signed-in user, one statement fewer on every page)."""
    tz = ZoneInfo(agent.timezone)
    periods = _periods(day)
    lo = min(p[1] for p in periods)
    hi = max(p[2] for p in periods)
    start = datetime.combine(lo, time(0), tzinfo=tz)
    end = datetime.combine(hi + timedelta(days=1), time(0), tzinfo=tz)
    entries = session.execute(
        _scoped(_PLAN_ENTRIES, program=program, campaign=campaign),
        {"plan_agent": agent.login, "plan_start": ensure_utc(start), "plan_end": ensure_utc(end)},
    ).all()
    local_days = [e.logged_at.astimezone(tz).date() for e in entries]
    calendar = _plan_calendar(session, program)
    figures = []
    for name, first, last in periods:
        calls = sum(1 for d in local_days if first <= d <= last)
        target, source = _agent_target(agent, name, first, last, calendar)
        figures.append(PlanFigure(name, first, last, calls, target, _ratio(calls, target), source))
    by_campaign = Counter(
        e.campaign or "(none)" for e, d in zip(entries, local_days, strict=True) if d == day
    )
    return CallingPlan(
        agent.login,
        agent.daily_target,
        agent.weekly_target,
        agent.monthly_target,
        figures,
        dict(sorted(by_campaign.items())),
    )


def _agent_target(
    agent: PlanAgent, period: str, first: date, last: date, calendar: str | None
) -> tuple[int, str]:
    """The agent's target for the period and where it comes from."""
    explicit = {
        "day": agent.daily_target,
        "week": agent.weekly_target,
        "month": agent.monthly_target,
    }[period]
    if explicit is not None:
        return explicit, TARGET_SET
    days = _business_days(first, last, calendar)
    holidays = f", {calendar} holidays skipped" if calendar else ""
    return agent.daily_target * days, f"daily × {days} business days{holidays}"


@dataclass(frozen=True)
class CampaignPlan:
    campaign: str
    program: str
    figures: list[PlanFigure]  # the periods the campaign sets a target for


def campaign_calling_plans(
    session: Session, *, day: date, program: str | None = None, campaign: str | None = None
) -> list[CampaignPlan]:
    """For each campaign whose newest run defines a ``calling_plan``: its calls (caller-log
    entries of the campaign, every agent) on ``day``, in its week (Mon-Sun) and its month, in
    the program's zone, against the targets. Only the campaigns of ``program`` (key) or just
    ``campaign`` when given, and then only their calls in that program."""
    runs = select(CampaignRun).order_by(CampaignRun.id)
    if program is not None:
        runs = runs.join(Program, Program.id == CampaignRun.program_id).where(
            Program.key == program
        )
    if campaign is not None:
        runs = runs.where(CampaignRun.campaign == campaign)
    newest: dict[str, CampaignRun] = {}
    for run in session.scalars(runs):
        newest[run.campaign] = run
    cache = DefinitionCache(session)
    plans = []
    for name, run in sorted(newest.items()):
        definition = cache.for_run(run.id)
        targets = definition.calling_plan if definition else None
        if targets is None:
            continue
        owner = session.get(Program, run.program_id)
        assert owner is not None  # FK
        tz = ZoneInfo(owner.timezone)
        figures = []
        for period, first, last in _periods(day):
            target = {"day": targets.daily, "week": targets.weekly, "month": targets.monthly}[
                period
            ]
            if target is None:
                continue
            start = datetime.combine(first, time(0), tzinfo=tz)
            end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz)
            count = _scoped(
                select(func.count())
                .select_from(CallerLogEntry)
                .where(
                    CallerLogEntry.logged_at >= ensure_utc(start),
                    CallerLogEntry.logged_at < ensure_utc(end),
                ),
                program=program,
                campaign=name,
            )
            calls = int(session.scalar(count) or 0)
            figures.append(PlanFigure(period, first, last, calls, target, _ratio(calls, target)))
        plans.append(CampaignPlan(name, owner.key, figures))
    return plans


@dataclass(frozen=True)
class ComplaintCount:
    period: date  # first day of the day / week (Monday) / month
    category: str
    count: int


def complaints_by_category(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    by: str = "week",
    zone: str = "UTC",
    dispositions: Dispositions | None = None,
    program: str | None = None,
    campaign: str | None = None,
    agent: str | None = None,
) -> list[ComplaintCount]:
    """Complaints logged in [start, end) by category and day / week / month (in ``zone``);
    only those of ``program`` (key), ``campaign`` and ``agent`` when given."""
    if by not in ("day", "week", "month"):
        raise ValueError(f"by is day, week or month, not {by!r}")
    tz = ZoneInfo(zone)
    counts: Counter[tuple[date, str]] = Counter()
    entries = complaint_entries(
        session,
        start=start,
        end=end,
        dispositions=dispositions,
        program=program,
        campaign=campaign,
        agent=agent,
    )
    for e in entries:
        d = bucket_start(e.logged_at.astimezone(tz).date(), by)
        counts[(d, complaint_category(e))] += 1
    return [ComplaintCount(d, c, n) for (d, c), n in sorted(counts.items())]


def complaint_entries(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    dispositions: Dispositions | None = None,
    program: str | None = None,
    campaign: str | None = None,
    agent: str | None = None,
) -> list[CallerLogEntry]:
    """The caller-log entries of complaints logged in [start, end), oldest first; only those
    of ``program`` (key), ``campaign`` and ``agent`` when given."""
    return _entries(
        session,
        ensure_utc(start),
        ensure_utc(end),
        program=program,
        campaign=campaign,
        agent=agent,
        where=_complaint(dispositions),
    )


def complaint_category(entry: CallerLogEntry) -> str:
    return str((entry.fields or {}).get("category", "uncategorised"))


def bucket_start(day: date, by: str) -> date:
    """The first day of the day / week (Monday) / month that ``day`` is in."""
    if by == "week":
        return day - timedelta(days=day.weekday())
    if by == "month":
        return day.replace(day=1)
    return day


def _complaint(dispositions: Dispositions | None) -> ColumnElement[bool]:
    """The entries whose disposition is a complaint in their own program's set."""
    default, by_program = _effects(dispositions)

    def codes(effects: dict[str, str]) -> list[str]:
        return sorted(code for code, effect in effects.items() if effect == "complaint")

    d = CallerLogEntry.disposition
    if not by_program:
        return d.in_(codes(default))
    others = and_(CallerLogEntry.program.not_in(sorted(by_program)), d.in_(codes(default)))
    own = [
        and_(CallerLogEntry.program == key, d.in_(codes(effects)))
        for key, effects in sorted(by_program.items())
        if codes(effects)
    ]
    return or_(others, *own) if own else or_(others, false())
