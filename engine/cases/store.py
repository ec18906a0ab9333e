"""Cases in the database: open (or join), record what happens to them, keep their follow-up
call task in step with their status. All the SQL of the cases concern but the reports.

A case on us (open, waiting on us) has exactly one follow-up call task on a list (a
``follow_up`` task naming the case, no campaign run: it is served like an inbound reply's
follow-up, to the owner agent alone or to the owner team); waiting on the member, resolved or
closed, it has none. The caller owns the transaction; on SQLite call first in it
(engine/db/session.take_write_lock), as every call-task writer does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.calls.batch_rows import TaskRow
from engine.calls.standards import add_business_hours
from engine.cases.states import ACTIVE, ON_US, due_at, transition
from engine.cases.views import unknown_case
from engine.clock import ensure_utc
from engine.db.models import CallTask, Case, CaseEvent, Participant, Program
from engine.errors import InputError, NotFoundError

if TYPE_CHECKING:
    # Only a type here: reading a case (the agent's call sheet) needs no rules file (#18).
    from engine.cases.config import CaseRules

# After a call that leaves a case on us with nothing on a list, the next follow-up is served
# this many business hours later: half the follow-up standard, so it is met with room.
NEXT_FOLLOW_UP_HOURS = 4.0
CASE_TASK_MAX_ATTEMPTS = 3
SOURCES = ("call", "sms", "manual")


@dataclass(frozen=True)
class Opened:
    case_id: int
    joined: bool  # an active case of the member in that category took it
    status: str
    due_at: datetime
    follow_up_task_id: int | None


def get_case(session: Session, case_id: int, *, lock: bool = False) -> Case:
    case = session.get(Case, case_id, with_for_update=lock, populate_existing=lock)
    if case is None:
        raise unknown_case(case_id)
    return case


def active_case(session: Session, participant_id: int, category: str) -> Case | None:
    return session.scalar(
        select(Case)
        .where(
            Case.participant_id == participant_id,
            Case.category == category,
            Case.status.in_(ACTIVE),
        )
        .with_for_update()
    )


def latest_active_case(session: Session, participant_id: int) -> Case | None:
    """The member's most recently opened case still being worked (any category)."""
    return session.scalar(
        select(Case)
        .where(Case.participant_id == participant_id, Case.status.in_(ACTIVE))
        .order_by(Case.opened_at.desc(), Case.id.desc())
        .limit(1)
    )


def open_case(
    session: Session,
    participant: Participant,
    *,
    category: str,
    summary: str | None,
    source: str,
    by: str,
    at: datetime,
    rules: CaseRules,
    owner_agent: str | None = None,
    owner_team: str | None = None,
    caller_log_id: int | None = None,
    call_task_id: int | None = None,
    adopt_task: CallTask | TaskRow | None = None,
) -> Opened:
    """Open a case for ``participant`` in ``category``, or join the active one: a second
    complaint while a case is being worked is the same case (a database constraint, so two
    agents logging at once still make one case). A member who comes back about a case that
    waited on them puts it back on us. ``adopt_task``: an open call task that becomes the
    case's follow-up when the case has none (an escalated call, already on the team's list)."""
    at = ensure_utc(at)
    # By hand: one of the known categories. From a call: whatever the program's complaint
    # disposition allows (its template checked it; a case never refuses a call).
    category = rules.check_category(category) if source == "manual" else category.strip().lower()
    if source not in SOURCES:
        raise InputError(f"unknown case source {source!r}")
    summary = (summary or "").strip() or None
    program = session.get(Program, participant.program_id)
    assert program is not None  # FK
    # The member was just on the phone: the first follow-up is not at once.
    first_due = next_follow_up_at(at, program.timezone)
    if source != "call":
        first_due = at
    existing = active_case(session, participant.id, category)
    if existing is None:
        case = Case(
            program_id=participant.program_id,
            participant_id=participant.id,
            category=category,
            summary=summary,
            status="open",
            source=source,
            owner_agent=owner_agent,
            owner_team=owner_team,
            opened_by=by,
            opened_at=at,
            due_at=due_at(at, rules.business_days(category), program.timezone),
            reopened=0,
            updated_at=at,
        )
        try:
            with session.begin_nested():
                session.add(case)
                session.flush()
        except IntegrityError:
            existing = active_case(session, participant.id, category)
            if existing is None:
                raise
        else:
            _event(
                session,
                case,
                "opened",
                by,
                at,
                None,
                "open",
                text=summary,
                caller_log_id=caller_log_id,
                call_task_id=call_task_id,
            )
            if adopt_task is not None:
                adopt_task.case_id = case.id
            task = sync_follow_up(session, case, at, due=first_due)
            return Opened(case.id, False, case.status, case.due_at, task)
    case = existing
    if adopt_task is not None and _open_task(session, case.id) is None:
        adopt_task.case_id = case.id
    kind = "call" if caller_log_id is not None else ("message" if source == "sms" else "note")
    text = f"again ({source}): {summary}" if summary else f"again ({source})"
    action = "member_contact" if source in ("call", "sms") else "note"
    record(
        session,
        case,
        kind,
        by,
        at,
        action=action,
        text=text,
        caller_log_id=caller_log_id,
        call_task_id=call_task_id,
        next_follow_up=first_due,
    )
    open_task = _open_task(session, case.id)
    return Opened(case.id, True, case.status, case.due_at, open_task.id if open_task else None)


def _event(
    session: Session,
    case: Case,
    kind: str,
    by: str,
    at: datetime,
    status_from: str | None,
    status_to: str | None,
    *,
    text: str | None = None,
    caller_log_id: int | None = None,
    call_task_id: int | None = None,
) -> CaseEvent:
    event = CaseEvent(
        case_id=case.id,
        at=at,
        kind=kind,
        by=by,
        status_from=status_from,
        status_to=status_to,
        caller_log_id=caller_log_id,
        call_task_id=call_task_id,
        text=text,
    )
    session.add(event)
    return event


def record(
    session: Session,
    case: Case,
    kind: str,
    by: str,
    at: datetime,
    *,
    action: str,
    text: str | None = None,
    caller_log_id: int | None = None,
    call_task_id: int | None = None,
    next_follow_up: datetime | None = None,
) -> str:
    """One entry of the case's history: the action's status change (refused when the status
    does not allow it), the event with who and when, and the follow-up task brought in step.
    Returns the new status."""
    at = ensure_utc(at)
    before = case.status
    after = transition(before, action)
    case.status = after
    case.updated_at = at
    changed = after != before
    _event(
        session,
        case,
        kind,
        by,
        at,
        before if changed else None,
        after if changed else None,
        text=text,
        caller_log_id=caller_log_id,
        call_task_id=call_task_id,
    )
    sync_follow_up(session, case, at, due=next_follow_up)
    return after


def _open_task(session: Session, case_id: int) -> CallTask | None:
    return session.scalar(
        select(CallTask)
        .where(CallTask.case_id == case_id, CallTask.status.in_(("open", "claimed")))
        .order_by(CallTask.id)
        .limit(1)
    )


def sync_follow_up(
    session: Session, case: Case, at: datetime, *, due: datetime | None = None
) -> int | None:
    """Give a case on us one follow-up task (due ``due``, default now) for its owner; take the
    open ones off the lists of a case that is not (a claimed one stays with its agent, who is
    on the phone). Returns the open task's id."""
    session.flush()
    if case.status not in ON_US:
        for listed in session.scalars(
            select(CallTask).where(CallTask.case_id == case.id, CallTask.status == "open")
        ):
            listed.status = "closed"
            listed.close_reason = f"case {case.id} {case.status.replace('_', ' ')}"
            listed.updated_at = at
        return None
    task = _open_task(session, case.id)
    if task is None:
        task = CallTask(
            kind="follow_up",
            run_id=None,
            participant_id=case.participant_id,
            campaign=None,
            status="open",
            due_at=due or at,
            attempts=0,
            max_attempts=CASE_TASK_MAX_ATTEMPTS,
            created_at=at,
            updated_at=at,
            case_id=case.id,
            team=case.owner_team,
            assigned_agent=case.owner_agent,
        )
        session.add(task)
        session.flush()
    return task.id


def next_follow_up_at(at: datetime, zone: str) -> datetime:
    return add_business_hours(at, NEXT_FOLLOW_UP_HOURS, zone)


def assign(
    session: Session, case: Case, *, agent: str | None, team: str | None, by: str, at: datetime
) -> None:
    if (agent is None) == (team is None):
        raise InputError("assign the case to one owner: --agent LOGIN or --team NAME")
    case.owner_agent, case.owner_team = agent, (team.strip().lower() if team else None)
    owner = f"agent {agent}" if agent else f"team {case.owner_team}"
    record(session, case, "assigned", by, at, action="assign", text=f"owner: {owner}")
    # What is on a list for the case moves to the new owner (not a call in progress).
    for task in session.scalars(
        select(CallTask).where(CallTask.case_id == case.id, CallTask.status == "open")
    ):
        task.team, task.assigned_agent, task.updated_at = case.owner_team, case.owner_agent, at


def hand_over_cases(
    session: Session, login: str, teams: Sequence[str], *, at: datetime
) -> list[int]:
    """The cases agent ``login`` is working go to a team when the agent is disabled (they
    left): the team of the case's latest call task, else the agent's first team; so no case is
    owned by someone who no longer works here. Raises InputError, with nothing changed, when a
    case has no team to go to. Returns the cases handed over."""
    working = and_(Case.owner_agent == login, Case.status.in_(sorted(ACTIVE)))
    cases = session.scalars(select(Case).where(working).order_by(Case.id)).all()
    moves = []
    for case in cases:
        task_team = session.scalar(
            select(CallTask.team)
            .where(CallTask.case_id == case.id, CallTask.team.is_not(None))
            .order_by(CallTask.id.desc())
            .limit(1)
        )
        moves.append((case, task_team or (teams[0] if teams else None)))
    stranded = [case.id for case, team in moves if team is None]
    if stranded:
        shown = ", ".join(map(str, stranded))
        raise InputError(
            f"agent {login} works case(s) {shown} and has no team to hand them to: give each "
            "an owner first (`campaign cases assign ID --agent LOGIN|--team NAME --by ...`)"
        )
    for case, team in moves:
        assign(session, case, agent=None, team=team, by="system", at=at)
    return [case.id for case, _ in moves]


def resolve(
    session: Session,
    case: Case,
    *,
    root_cause: str,
    resolution: str,
    by: str,
    at: datetime,
    rules: CaseRules,
) -> None:
    code = rules.check_root_cause(root_cause)
    if not resolution.strip():
        raise InputError("say how the case was resolved: --resolution TEXT")
    transition(case.status, "resolve")  # refused before anything changes
    case.root_cause, case.resolution, case.resolved_at = code, resolution.strip(), ensure_utc(at)
    record(session, case, "resolved", by, at, action="resolve", text=f"{code}: {resolution}")


def reopen(
    session: Session, case: Case, *, by: str, at: datetime, rules: CaseRules, reason: str | None
) -> None:
    """Back to work: a new due time from now, the root cause kept until it is resolved again
    (the report counts the case as reopened)."""
    program = session.get(Program, case.program_id)
    assert program is not None
    record(session, case, "reopened", by, at, action="reopen", text=reason)
    case.reopened += 1
    case.closed_at = None
    case.due_at = due_at(ensure_utc(at), rules.business_days(case.category), program.timezone)


def close(session: Session, case: Case, *, by: str, at: datetime) -> None:
    record(session, case, "closed", by, at, action="close")
    case.closed_at = ensure_utc(at)


def participant_by_external_id(session: Session, program: Program, external_id: str) -> Participant:
    found = session.scalar(
        select(Participant).where(
            Participant.program_id == program.id,
            Participant.external_id == external_id.strip(),
        )
    )
    if found is None:
        raise NotFoundError(f"no participant {external_id!r} in program {program.key!r}")
    return found


def erase_case_texts(session: Session, participant_id: int) -> int:
    """Erasure: the member's words leave their cases (summary, resolution, every history
    text); categories, statuses, times and root causes stay for the reports."""
    ids = select(Case.id).where(Case.participant_id == participant_id)
    events = session.execute(
        update(CaseEvent)
        .where(CaseEvent.case_id.in_(ids), CaseEvent.text.is_not(None))
        .values(text=None)
        .execution_options(synchronize_session=False)
    )
    cases = session.execute(
        update(Case)
        .where(Case.participant_id == participant_id)
        .values(summary=None, resolution=None)
        .execution_options(synchronize_session=False)
    )
    return int(events.rowcount or 0) + int(cases.rowcount or 0)  # type: ignore[attr-defined]
