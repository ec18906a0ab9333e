"""Where cases meet calls and messages (called by engine/calls/log.py and the inbound SMS
handler, inside their transactions):

- a COMPLAINT call opens a case in the complaint's category, owned by the agent who took it
  (or joins the member's active case of that category);
- an ESCALATED call opens an ``escalation`` case owned by the team it went to; the escalated
  task, already on that team's list, is the case's follow-up;
- any call logged on a case's follow-up task goes into the case's history, linked to its
  caller log entry; a callback it asks for stays with the case; a case still on us with
  nothing left on a list gets its next follow-up a few business hours later;
- an inbound SMS HELP opens a ``help`` case for the team-less queue; any other reply from a
  member with an active case goes into that case's history and puts it back on us.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from engine.calls.batch_rows import TaskRow
from engine.cases.config import DEFAULT_RULES, ESCALATION, HELP, CaseRules
from engine.cases.states import ACTIVE, ON_US
from engine.cases.store import (
    _open_task,
    get_case,
    latest_active_case,
    next_follow_up_at,
    open_case,
    record,
)
from engine.db.models import CallTask, Participant, Program

RulesFor = Callable[[str], CaseRules]  # program key -> its case rules


@dataclass(frozen=True)
class CaseTouch:
    case_id: int
    opened: bool  # a new case (else the call joined or followed one up)
    status: str


def _rules(rules_for: RulesFor | None, program: Program) -> CaseRules:
    return rules_for(program.key) if rules_for is not None else DEFAULT_RULES


def after_call(
    session: Session,
    *,
    task: CallTask | TaskRow,  # a batch's row (engine/calls/batch_rows.py) or the ORM's
    created: CallTask | None,
    effect: str,
    fields: dict[str, Any],
    human_contact: bool,
    record_text: str,
    log_id: Callable[[], int],
    agent: str,
    at: datetime,
    rules_for: RulesFor | None = None,
) -> CaseTouch | None:
    """What a logged call does to cases (see the module docstring)."""
    participant = session.get(Participant, task.participant_id)
    assert participant is not None
    program = session.get(Program, participant.program_id)
    assert program is not None
    followed = task.case_id
    if effect in ("complaint", "escalate"):
        escalation = effect == "escalate"
        opened = open_case(
            session,
            participant,
            category=ESCALATION if escalation else str(fields.get("category") or "other"),
            summary=str(fields.get("reason" if escalation else "summary") or "") or None,
            source="call",
            by=agent,
            at=at,
            rules=_rules(rules_for, program),
            owner_agent=None if escalation else agent,
            owner_team=str(fields["team"]).strip().lower() if escalation else None,
            caller_log_id=log_id(),
            call_task_id=task.id,
            adopt_task=task if escalation and task.status == "open" else None,
        )
        if followed is None or followed == opened.case_id:
            return CaseTouch(opened.case_id, not opened.joined, opened.status)
    if followed is None:
        return None
    case = get_case(session, followed, lock=True)
    if case.status not in ACTIVE:
        return CaseTouch(case.id, False, case.status)  # resolved while the agent was on it
    if created is not None:
        created.case_id = case.id  # a callback it asked for stays with the case
    pending = _open_task(session, case.id)
    next_at = None if pending is not None else next_follow_up_at(at, program.timezone)
    status = record(
        session,
        case,
        "call",
        agent,
        at,
        action="call",
        text=record_text if human_contact else f"attempt: {record_text}",
        caller_log_id=log_id(),
        call_task_id=task.id,
        next_follow_up=next_at,
    )
    return CaseTouch(case.id, False, status)


def after_inbound_sms(
    session: Session,
    participant_id: int,
    *,
    keyword: str | None,
    body: str,
    at: datetime,
    rules_for: RulesFor | None = None,
) -> int | None:
    """A member's text: HELP opens (or joins) a help case; another reply joins their active
    case. Returns the case's open follow-up task (None: no case took the text)."""
    participant = session.get(Participant, participant_id)
    assert participant is not None
    if keyword == "help":
        program = session.get(Program, participant.program_id)
        assert program is not None
        opened = open_case(
            session,
            participant,
            category=HELP,
            summary=f"texted {body.strip()[:200]}",
            source="sms",
            by="member",
            at=at,
            rules=_rules(rules_for, program),
        )
        return opened.follow_up_task_id
    if keyword is not None:
        return None
    case = latest_active_case(session, participant_id)
    if case is None:
        return None
    record(session, case, "message", "member", at, action="member_contact", text=body[:1600])
    task = _open_task(session, case.id)
    return task.id if task is not None and case.status in ON_US else None
