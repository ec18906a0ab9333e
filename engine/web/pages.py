"""The agent's pages: the call sheet of the task they hold (its account gated on the
verification the agent records), next call, release, the disposition form, "my callbacks
today", their pause and their calling plan.

Every rule is the engine's: the claim is `calls next`'s (engine/calls/claiming.py
take_next_as: lease, gate, language routing), the log is `calls log`'s (engine/calls/log.py
log_call, refusing with its messages) and release is `calls release`'s. What is the console's
own is access: an agent acts only on the task they hold, as themselves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.orm import Session, aliased

from engine.calls import caller_log
from engine.calls.log import LogResult, log_call, program_dispositions
from engine.calls.pauses import pause_codes
from engine.calls.reporting import CallingPlan
from engine.calls.scripts import CallSheet, gated_call_sheet
from engine.calls.tasks import DefinitionCache, release
from engine.calls.verification import Gate, held_claim_params, held_claim_query, own_claim
from engine.clock import ensure_utc
from engine.db.models import (
    Agent,
    CallerLogEntry,
    CallTask,
    CampaignRun,
    Participant,
    Program,
)
from engine.db.reading import Reader
from engine.db.session import take_write_lock
from engine.db.tables.calls import agent_pauses
from engine.errors import InputError
from engine.policy import candidate_zones, effective_window
from engine.settings import Settings
from engine.web.auth import AGENT_ROLES, USER_QUERY, SignedIn, signed_in
from engine.web.forms import DispositionForm, call_input, forms_for
from engine.web.pauses import PauseView, pause_view
from engine.web.plan import plan_today
from engine.web.sessions import ConsoleSession


@dataclass(frozen=True)
class MemberClock:
    zone: str | None
    window: str  # "08:00-21:00" in the member's zone: when calls (and callbacks) may happen


def member_clock(session: Session, task: CallTask) -> MemberClock:
    p = session.get(Participant, task.participant_id)
    assert p is not None  # FK
    program = session.get(Program, p.program_id)
    assert program is not None  # FK
    definition = DefinitionCache(session).for_run(task.run_id)
    window = effective_window("call", definition.call_window if definition else None)
    shown = f"{window.start:%H:%M}-{window.end:%H:%M}" if window else "any time"
    try:
        zones = candidate_zones(
            participant_zone=p.timezone,
            phone=p.phone,
            program_zone=program.timezone,
            region=program.region,
        ).zones
    except ValueError:
        zones = ()
    return MemberClock(zones[0] if zones else None, shown)


@dataclass(frozen=True)
class CallbackRow:
    task_id: int
    due_at: datetime
    due_local: str  # in the agent's zone
    external_id: str
    status: str
    only_me: bool


# Built once: an alias of call_tasks copies each of its columns, which cost more than the
# rest of the page's queries together when it was built for every page.
_PARENT = aliased(CallTask, name="parent_task")
_MY_CALLBACKS = (
    select(CallTask, Participant.external_id)
    .join(Participant, Participant.id == CallTask.participant_id)
    .outerjoin(_PARENT, _PARENT.id == CallTask.parent_task_id)
    .where(
        CallTask.kind == "callback",
        CallTask.status.in_(("open", "claimed")),
        CallTask.due_at >= bindparam("start"),
        CallTask.due_at < bindparam("end"),
        or_(
            CallTask.assigned_agent == bindparam("agent"),
            and_(_PARENT.claimed_by == bindparam("agent"), _PARENT.outcome == "CALLBACK"),
        ),
    )
    .order_by(CallTask.due_at)
    .limit(200)
)


def my_callbacks_today(session: Session, agent: str, zone: str, at: datetime) -> list[CallbackRow]:
    """Callbacks due on the agent's local today that are theirs: assigned to them, or booked
    by them for anyone and still open."""
    tz = ZoneInfo(zone)
    day = ensure_utc(at).astimezone(tz).date()
    start = datetime.combine(day, time(0), tz)
    end = start + timedelta(days=1)
    rows = session.execute(
        _MY_CALLBACKS, {"agent": agent, "start": ensure_utc(start), "end": ensure_utc(end)}
    ).all()
    return [
        CallbackRow(
            t.id,
            t.due_at,
            t.due_at.astimezone(tz).strftime("%H:%M"),
            external_id,
            t.status,
            t.assigned_agent == agent,
        )
        for t, external_id in rows
    ]


@dataclass(frozen=True)
class AgentPage:
    sheet: CallSheet | None
    forms: list[DispositionForm]
    member: MemberClock | None
    callbacks: list[CallbackRow]
    logged: dict[str, Any] | None
    gate: Gate | None = None
    pause: PauseView | None = None
    pause_codes: tuple[str, ...] = ()
    plan: CallingPlan | None = None


# The agent's claim with its member, program and run in one statement; built once.
_HELD_WITH_ROWS = (
    held_claim_query()
    .add_columns(Participant, Program, CampaignRun)
    .join(Participant, Participant.id == CallTask.participant_id)
    .join(Program, Program.id == Participant.program_id)
    .outerjoin(CampaignRun, CampaignRun.id == CallTask.run_id)
)
# Who is asking, for the agent's page: the user and their agent (auth's statement), with the
# agent's targets for the calling plan and their open pause (ended_at NULL, as
# engine/calls/pauses.py reads it; at most one: a unique index), so the page reads none of
# them again. Columns, not mapped rows: the claim reads it on its Core connection (#19).
_PAGE_USER = USER_QUERY.add_columns(
    Agent.daily_target,
    Agent.weekly_target,
    Agent.monthly_target,
    agent_pauses.c.code,
    agent_pauses.c.started_at,
).outerjoin(
    agent_pauses, and_(agent_pauses.c.agent == Agent.login, agent_pauses.c.ended_at.is_(None))
)


@dataclass(frozen=True)
class AgentTargets:
    """The agent's columns the calling plan reads (engine/calls/reporting.py PlanAgent)."""

    login: str
    timezone: str
    daily_target: int
    weekly_target: int | None
    monthly_target: int | None


@dataclass(frozen=True)
class WorkingAgent:
    """A signed-in user who works calls, as their page reads them: the agent's targets (for
    the calling plan) and their open pause, read with the user in one statement."""

    user: SignedIn
    row: AgentTargets
    pause: PauseView | None

    @property
    def login(self) -> str:
        return self.row.login

    @property
    def zone(self) -> str:
        return self.user.zone


def page_user(
    db: Reader, settings: Settings, value: ConsoleSession
) -> tuple[SignedIn | None, WorkingAgent | None]:
    """The user the cookie names and, when they are a working agent, what their page needs
    of them: one statement (on a session or a Core connection). None for the agent when the
    user may not work calls."""
    row = (
        db.execute(_PAGE_USER, {"user_id": value.user_id}).first()
        if value.user_id is not None
        else None
    )
    user = signed_in(row, value, settings.default_timezone)
    if user is None or user.role not in AGENT_ROLES or user.agent is None:
        return user, None
    assert row is not None
    zone, daily, weekly, monthly, pause_code, pause_started = row[7:]
    targets = AgentTargets(user.agent, zone, daily, weekly, monthly)
    return user, WorkingAgent(user, targets, pause_view(pause_code, pause_started, user.zone))


def agent_home(
    session: Session,
    settings: Settings,
    value: ConsoleSession,
    *,
    at: datetime,
    logged_seq: int | None,
) -> tuple[SignedIn | None, AgentPage | None]:
    """The user the cookie names and, when they are a working agent, their page: one session
    for both. None for the page when the user may not see it (the handler refuses)."""
    user, me = page_user(session, settings, value)
    if me is None:
        return user, None
    logged = logged_entry(session, me.login, logged_seq) if logged_seq is not None else None
    return user, agent_page(session, settings, me, at=at, logged=logged)


def logged_entry(session: Session, agent: str, seq: int) -> dict[str, Any] | None:
    """The caller log entry ``seq`` for the page's "logged" line; only the agent's own: a seq
    in the URL never shows another agent's call."""
    entry = session.scalar(
        select(CallerLogEntry).where(CallerLogEntry.seq == seq, CallerLogEntry.agent == agent)
    )
    if entry is None:
        return None
    return {"seq": entry.seq, "record": entry.record, "task_id": entry.task_id}


def logged_of(result: LogResult) -> dict[str, Any]:
    """The page's "logged" line of a call just logged: what :func:`logged_entry` reads."""
    return {"seq": result.seq, "record": result.record, "task_id": result.task_id}


def agent_page(
    session: Session,
    settings: Settings,
    me: WorkingAgent,
    *,
    at: datetime,
    logged: dict[str, Any] | None,
) -> AgentPage:
    agent, zone = me.login, me.zone
    # Held for the whole page: the session's identity map keeps only referenced rows, and the
    # gate, the call sheet and the member's clock each get these by primary key (from the map,
    # no SELECT).
    held = session.execute(_HELD_WITH_ROWS, held_claim_params(agent, at)).first()
    task, _member, program, _run = held if held is not None else (None, None, None, None)
    sheet, gate = (
        gated_call_sheet(session, task, settings=settings, at=at, zone=zone)
        if task
        else (None, None)
    )
    forms = (
        forms_for(program_dispositions(settings.dispositions_file, program.key))
        if program is not None
        else []
    )
    return AgentPage(
        sheet=sheet,
        forms=forms,
        member=member_clock(session, task) if task else None,
        callbacks=my_callbacks_today(session, agent, zone, at),
        logged=logged,
        gate=gate,
        pause=me.pause,
        pause_codes=pause_codes(settings),
        plan=plan_today(session, me.row, zone, at),
    )


def log_from_form(
    session: Session,
    settings: Settings,
    form: dict[str, str],
    *,
    agent: str,
    zone: str,
    at: datetime,
) -> LogResult:
    """`calls log` for the agent's own live claim, from the submitted form."""
    try:
        task_id = int(form.get("task_id", ""))
    except ValueError:
        raise InputError("the form names no task; reload the page") from None
    # The locks log_call would take, taken first (SQLite: the write lock must be the
    # transaction's first statement), so the ownership check and the log see one state.
    take_write_lock(session)
    caller_log.serialise(session)
    task = own_claim(session, task_id, agent, at)
    # The member and program by primary key: log_call reads them the same way, so these are
    # its rows too (the session's identity map), not two more statements.
    member = session.get(Participant, task.participant_id)
    assert member is not None  # FK
    program = session.get(Program, member.program_id)
    assert program is not None  # FK
    dispositions = program_dispositions(settings.dispositions_file, program.key)
    call = call_input(
        form, task_id=task_id, agent=agent, agent_zone=zone, dispositions=dispositions
    )
    return log_call(session, call, dispositions, at=at, lock=False)


def release_own(session: Session, form: dict[str, str], *, agent: str, at: datetime) -> int:
    try:
        task_id = int(form.get("task_id", ""))
    except ValueError:
        raise InputError("the form names no task; reload the page") from None
    take_write_lock(session)
    own_claim(session, task_id, agent, at)
    release(session, task_id, agent, at=at)
    return task_id
