"""What `cases list`, `cases show` and the agent's call sheet see of cases: plain dataclasses
read from the database, with overdue and the follow-up standard's breaches worked out.

A case is shown from the Core tables, on a Session or a plain Connection: `calls next`
builds the call sheet (with the case it follows up) without the ORM (#18)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from engine.cases.states import ACTIVE, Breach, Moment, follow_up_breaches, is_overdue
from engine.clock import ensure_utc
from engine.db.reading import Reader, row_by_id
from engine.db.tables.calls import call_tasks, caller_log
from engine.db.tables.cases import case_events, cases
from engine.db.tables.members import participants, programs
from engine.errors import InputError, NotFoundError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

CASE_ACTION = {"call": "call", "reopened": "reopen", "resolved": "resolve"}


@dataclass(frozen=True)
class HistoryItem:
    at: datetime
    kind: str  # opened, call, note, message, assigned, status, resolved, reopened, closed
    by: str
    status_from: str | None
    status_to: str | None
    text: str | None
    caller_log_seq: int | None = None  # the call's entry on the caller log
    disposition: str | None = None


@dataclass(frozen=True)
class CaseRow:
    id: int
    program: str
    external_id: str
    category: str
    status: str
    owner: str  # "agent LOGIN", "team NAME" or "unassigned"
    opened_at: datetime
    due_at: datetime
    overdue: bool
    breaches: int
    summary: str | None
    root_cause: str | None = None


@dataclass(frozen=True)
class CaseView:
    case: CaseRow
    source: str
    opened_by: str
    resolution: str | None
    resolved_at: datetime | None
    closed_at: datetime | None
    reopened: int
    follow_up_task_id: int | None
    history: list[HistoryItem] = field(default_factory=list)
    breaches: list[str] = field(default_factory=list)


def unknown_case(case_id: int) -> NotFoundError:
    return NotFoundError(f"no case {case_id}; see `campaign cases list`")


def owner_of(case: Any) -> str:
    if case.owner_agent:
        return f"agent {case.owner_agent}"
    if case.owner_team:
        return f"team {case.owner_team}"
    return "unassigned"


def moments(case: Any, events: Iterable[Any]) -> list[Moment]:
    """The history as the follow-up standard reads it (the status after each event)."""
    status = "open"
    found = []
    for event in events:
        if event.kind == "opened":
            continue
        status = event.status_to or status
        found.append(Moment(event.at, CASE_ACTION.get(event.kind, event.kind), status))
    return found


def breaches_of(case: Any, events: Sequence[Any], zone: str, at: datetime) -> list[Breach]:
    return follow_up_breaches(case.opened_at, moments(case, events), at=at, zone=zone)


def _events(db: Reader, case_ids: Sequence[int]) -> dict[int, list[Any]]:
    """The case_events rows of each case, in order."""
    column = case_events.c
    found: dict[int, list[Any]] = {}
    for i in range(0, len(case_ids), 500):
        for event in db.execute(
            select(case_events)
            .where(column.case_id.in_(case_ids[i : i + 500]))
            .order_by(column.at, column.id)
        ):
            found.setdefault(event.case_id, []).append(event)
    return found


def _row(case: Any, key: str, external_id: str, at: datetime, breaches: int) -> CaseRow:
    return CaseRow(
        id=case.id,
        program=key,
        external_id=external_id,
        category=case.category,
        status=case.status,
        owner=owner_of(case),
        opened_at=case.opened_at,
        due_at=case.due_at,
        overdue=is_overdue(case.status, case.due_at, at),
        breaches=breaches,
        summary=case.summary,
        root_cause=case.root_cause,
    )


def list_cases(
    session: Session,
    *,
    at: datetime,
    owner: str | None = None,
    team: str | None = None,
    category: str | None = None,
    program: str | None = None,
    overdue: bool = False,
    breaches: bool = False,
    include_done: bool = False,
) -> list[CaseRow]:
    """Cases being worked (``include_done``: resolved and closed too), oldest due first;
    ``overdue``: past their due time; ``breaches``: with a breach of the follow-up standard."""
    from engine.db.models import Case, Participant, Program

    at = ensure_utc(at)
    if owner is not None and team is not None:
        raise InputError("--owner and --team: give one")
    query = (
        select(Case, Program.key, Program.timezone, Participant.external_id)
        .join(Program, Program.id == Case.program_id)
        .join(Participant, Participant.id == Case.participant_id)
        .order_by(Case.due_at, Case.id)
    )
    if not include_done:
        query = query.where(Case.status.in_(ACTIVE))
    if owner is not None:
        query = query.where(Case.owner_agent == owner.strip().lower())
    if team is not None:
        query = query.where(Case.owner_team == team.strip().lower())
    if category is not None:
        query = query.where(Case.category == category.strip().lower())
    if program is not None:
        query = query.where(Program.key == program)
    if overdue:
        query = query.where(Case.status.in_(ACTIVE), Case.due_at < at)
    rows = session.execute(query).all()
    events = _events(session, [row[0].id for row in rows])
    found = []
    for case, key, zone, external_id in rows:
        count = len(breaches_of(case, events.get(case.id, []), zone, at))
        if breaches and not count:
            continue
        found.append(_row(case, key, external_id, at, count))
    return found


def history(db: Reader, case_ids: Sequence[int]) -> dict[int, list[HistoryItem]]:
    events = _events(db, case_ids)
    log_ids = [e.caller_log_id for items in events.values() for e in items if e.caller_log_id]
    entry = caller_log.c
    calls = {
        row.id: (row.seq, row.disposition)
        for row in db.execute(
            select(entry.id, entry.seq, entry.disposition).where(entry.id.in_(log_ids))
        )
    }
    return {
        case_id: [
            HistoryItem(
                e.at,
                e.kind,
                e.by,
                e.status_from,
                e.status_to,
                e.text,
                *calls.get(e.caller_log_id or 0, (None, None)),
            )
            for e in items
        ]
        for case_id, items in events.items()
    }


def show_case(db: Reader, case_id: int, *, at: datetime) -> CaseView:
    at = ensure_utc(at)
    case = row_by_id(db, cases, case_id)
    if case is None:
        raise unknown_case(case_id)
    program = row_by_id(db, programs, case.program_id)
    participant = row_by_id(db, participants, case.participant_id)
    assert program is not None and participant is not None
    events = _events(db, [case.id]).get(case.id, [])
    found = breaches_of(case, events, program.timezone, at)
    return CaseView(
        case=_row(case, program.key, participant.external_id, at, len(found)),
        source=case.source,
        opened_by=case.opened_by,
        resolution=case.resolution,
        resolved_at=case.resolved_at,
        closed_at=case.closed_at,
        reopened=case.reopened,
        follow_up_task_id=_follow_up_task_id(db, case.id),
        history=history(db, [case.id]).get(case.id, []),
        breaches=[b.describe() for b in found],
    )


def _follow_up_task_id(db: Reader, case_id: int) -> int | None:
    """The case's follow-up task on a list (engine/cases/store.py keeps at most one)."""
    task = call_tasks.c
    return db.execute(
        select(task.id)
        .where(task.case_id == case_id, task.status.in_(("open", "claimed")))
        .order_by(task.id)
        .limit(1)
    ).scalar()
