"""The call list as it would be served (`campaign calls list`): each task with its place, why
it is there and what it waits for. Built from the same candidates and ranking as the claim
(engine/calls/tasks.py), so the list and `calls next` never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy.orm import Session

from engine.calls.agents import get_agent
from engine.calls.rules import DEFAULT_RULES, CallRules
from engine.calls.tasks import LOOKAHEAD, Candidate, candidates
from engine.clock import ensure_utc
from engine.locales import display_name


@dataclass(frozen=True)
class ListedTask:
    position: int
    task_id: int
    kind: str
    external_id: str
    name: str
    phone: str | None
    campaign: str | None
    step: str | None
    team: str | None
    assigned_agent: str | None
    due_at: datetime
    callable_at: datetime | None
    callable_now: bool
    attempts: int
    max_attempts: int
    priority_rank: int
    why: str
    blocked: str | None
    waits_for: str | None = None  # calling_window / frequency_cap / language, when not now


def why(c: Candidate) -> str:
    task = c.task
    where = f"{task.campaign} / {c.step.id}" if task.campaign and c.step else (task.campaign or "")
    if task.kind == "callback":
        who = f" with {task.assigned_agent} only" if task.assigned_agent else ""
        if c.fallback:
            who = f" with {task.assigned_agent}; now the team's too ({c.fallback})"
        text_ = f"callback requested for {task.due_at.isoformat(timespec='minutes')}{who}"
    elif task.kind == "follow_up" and task.case_id is not None:
        text_ = f"follow-up of case {task.case_id}"
    elif task.kind == "follow_up":
        text_ = "follow-up of a promise" if task.parent_task_id else "follow-up"
    else:
        text_ = "campaign call"
    if where:
        text_ += f" ({where})"
    if task.attempts:
        text_ += f"; retry after {task.outcome} (attempt {task.attempts + 1}/{task.max_attempts})"
    if task.team:
        text_ += f"; team {task.team}"
    if c.step and c.step.priority:
        keys = ", ".join(f"{k.field} {k.order}" for k in c.step.priority)
        text_ += f"; rank {c.rank + 1} by {keys}"
    if c.blocked:
        text_ += f"; NOT CALLABLE: {c.blocked}"
    elif not c.callable_now and c.callable_at is not None:
        until = c.callable_at.isoformat(timespec="minutes")
        if c.waits_for == "frequency_cap":
            text_ += f"; waits for the frequency cap until {until}"
        elif c.waits_for == "language":
            text_ += f"; waits for an agent who speaks {c.held_for_language} until {until}"
        else:
            text_ += "; waits for the calling window"
    return text_


def list_calls(
    session: Session,
    *,
    at: datetime,
    agent: str | None = None,
    day: date | None = None,
    zone: str | None = None,
    rules: CallRules = DEFAULT_RULES,
) -> list[ListedTask]:
    """The call list as it would be served: now, or for the local ``day`` in ``zone``
    (default: the agent's zone), including tasks that fall due that day."""
    at = ensure_utc(at)
    agent_row = get_agent(session, agent) if agent else None
    until = at + LOOKAHEAD
    if day is not None:
        from zoneinfo import ZoneInfo

        tz = ZoneInfo(zone or (agent_row.timezone if agent_row else "UTC"))
        until = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    rows = candidates(session, at=at, agent=agent_row, until=until, rules=rules)
    return [
        ListedTask(
            position=index + 1,
            task_id=c.task.id,
            kind=c.task.kind,
            external_id=c.participant.external_id,
            name=display_name(
                c.participant.first_name, c.participant.last_name, c.participant.locale
            ),
            phone=c.participant.phone,
            campaign=c.task.campaign,
            step=c.step.id if c.step else None,
            team=c.task.team,
            assigned_agent=c.task.assigned_agent,
            due_at=c.task.due_at,
            callable_at=c.callable_at,
            callable_now=c.callable_now,
            attempts=c.task.attempts,
            max_attempts=c.task.max_attempts,
            priority_rank=c.rank + 1,
            why=why(c),
            blocked=c.blocked,
            waits_for=None if c.callable_now else c.waits_for,
        )
        for index, c in enumerate(rows)
    ]
