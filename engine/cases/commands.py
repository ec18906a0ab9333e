"""The engine functions behind `campaign cases ...`: each takes the session, checks the input
(agents, programs, categories, root causes from the program's list) and returns the case as
`cases show` presents it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from engine.calls.agents import get_agent
from engine.cases import store
from engine.cases.config import rules_for
from engine.cases.views import CaseView, show_case
from engine.db.models import Program
from engine.db.session import take_write_lock
from engine.errors import InputError
from engine.programs import get_program


def _who(session: Session, login: str) -> str:
    """An agent's login (coordinators and managers are agents with a role): every entry of a
    case's history names who made it."""
    return get_agent(session, login).login


def _owner(session: Session, agent: str | None, team: str | None) -> tuple[str | None, str | None]:
    if agent is not None and team is not None:
        raise InputError("one owner: --agent LOGIN or --team NAME")
    if agent is not None:
        found = get_agent(session, agent)
        if not found.active:
            raise InputError(f"agent {found.login!r} is disabled; assign the case to someone else")
        return found.login, None
    return None, team.strip().lower() if team else None


def open_by_hand(
    session: Session,
    settings: Any,
    external_id: str,
    *,
    category: str,
    summary: str,
    by: str,
    at: datetime,
    program: str | None = None,
    agent: str | None = None,
    team: str | None = None,
) -> tuple[CaseView, bool]:
    """`cases open`: a case for the member (or the active one of that category, joined)."""
    take_write_lock(session)
    if not summary.strip():
        raise InputError("say what the case is about: --summary TEXT")
    who = _who(session, by)
    found = get_program(session, program)
    participant = store.participant_by_external_id(session, found, external_id)
    owner_agent, owner_team = _owner(session, agent, team)
    opened = store.open_case(
        session,
        participant,
        category=category,
        summary=summary,
        source="manual",
        by=who,
        at=at,
        rules=rules_for(settings, found.key),
        owner_agent=owner_agent if owner_agent or owner_team else who,
        owner_team=owner_team,
    )
    return show_case(session, opened.case_id, at=at), opened.joined


def assign_case(
    session: Session,
    case_id: int,
    *,
    agent: str | None,
    team: str | None,
    by: str,
    at: datetime,
) -> CaseView:
    take_write_lock(session)
    who = _who(session, by)
    case = store.get_case(session, case_id, lock=True)
    owner_agent, owner_team = _owner(session, agent, team)
    store.assign(session, case, agent=owner_agent, team=owner_team, by=who, at=at)
    return show_case(session, case_id, at=at)


WAITING = {"member": "wait_on_member", "us": "wait_on_us"}


def note_case(
    session: Session,
    case_id: int,
    text: str,
    *,
    by: str,
    at: datetime,
    waiting_on: str | None = None,
) -> CaseView:
    """A note; ``waiting_on`` (member / us) also says whose move it is now."""
    take_write_lock(session)
    if not text.strip():
        raise InputError("the note is empty")
    who = _who(session, by)
    case = store.get_case(session, case_id, lock=True)
    if waiting_on is not None and waiting_on not in WAITING:
        raise InputError(f"--waiting-on {waiting_on!r}: use member or us")
    action = WAITING[waiting_on] if waiting_on else "note"
    store.record(session, case, "note", who, at, action=action, text=text.strip())
    return show_case(session, case_id, at=at)


def _program_key(session: Session, program_id: int) -> str:
    program = session.get(Program, program_id)
    assert program is not None
    return program.key


def resolve_case(
    session: Session,
    settings: Any,
    case_id: int,
    *,
    root_cause: str,
    resolution: str,
    by: str,
    at: datetime,
) -> CaseView:
    take_write_lock(session)
    who = _who(session, by)
    case = store.get_case(session, case_id, lock=True)
    rules = rules_for(settings, _program_key(session, case.program_id))
    store.resolve(
        session, case, root_cause=root_cause, resolution=resolution, by=who, at=at, rules=rules
    )
    return show_case(session, case_id, at=at)


def reopen_case(
    session: Session, settings: Any, case_id: int, *, by: str, at: datetime, reason: str | None
) -> CaseView:
    take_write_lock(session)
    who = _who(session, by)
    case = store.get_case(session, case_id, lock=True)
    rules = rules_for(settings, _program_key(session, case.program_id))
    store.reopen(session, case, by=who, at=at, rules=rules, reason=reason)
    return show_case(session, case_id, at=at)


def close_case(session: Session, case_id: int, *, by: str, at: datetime) -> CaseView:
    take_write_lock(session)
    who = _who(session, by)
    case = store.get_case(session, case_id, lock=True)
    store.close(session, case, by=who, at=at)
    return show_case(session, case_id, at=at)
