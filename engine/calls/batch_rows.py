"""The call tasks and members a dialer import chunk works on, read through Core into plain
objects with the ORM's attribute names, which `log_call` reads (and, a task, changes) as it
does a :class:`~engine.db.models.CallTask` or :class:`~engine.db.models.Participant`;
:class:`~engine.calls.log.CallBatch` writes the tasks back with one UPDATE for the chunk.

The ORM's instrumentation of these objects (building them from the rows, tracking every
attribute set, taking the tasks out of the session again) cost about a quarter of an
import's time, for objects the unit of work never writes. What writes a member (a
conversion's last activity) or reads one into a case takes the ORM's object then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from engine.db.queries import any_of
from engine.db.tables.calls import call_tasks
from engine.db.tables.members import participants

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(slots=True, eq=False)
class TaskRow:
    """Every column of a ``call_tasks`` row, by name (the ORM class's attributes)."""

    id: int
    kind: str
    run_id: int | None
    enrollment_id: int | None
    participant_id: int
    campaign: str | None
    step_id: str | None
    step_index: int | None
    script: str | None
    team: str | None
    status: str
    close_reason: str | None
    outcome: str | None
    due_at: datetime
    attempts: int
    max_attempts: int
    claimed_by: str | None
    claimed_until: datetime | None
    reached_at: datetime | None
    created_at: datetime
    updated_at: datetime
    assigned_agent: str | None
    parent_task_id: int | None
    source_step_id: str | None
    claimed_at: datetime | None
    last_attempt_at: datetime | None
    expires_at: datetime | None
    case_id: int | None
    verified_at: datetime | None
    verified_by: str | None


@dataclass(slots=True, eq=False)
class MemberRow:
    """The member's columns a call reads (their ids, number and zone)."""

    id: int
    program_id: int
    external_id: str
    phone: str | None
    timezone: str | None


_TASK_COLUMNS = [call_tasks.c[field.name] for field in fields(TaskRow)]
_MEMBER_COLUMNS = [participants.c[field.name] for field in fields(MemberRow)]


def locked_task_rows(session: Session, ids: Sequence[int]) -> dict[int, TaskRow]:
    """The tasks of ``ids`` that exist, by id, each row locked (PostgreSQL ``FOR UPDATE``,
    taken in id order so two importers never wait on each other crosswise; SQLite: the write
    lock the caller took first)."""
    postgres = session.get_bind().dialect.name == "postgresql"
    query = (
        select(*_TASK_COLUMNS)
        .where(any_of(call_tasks.c.id, ids, postgres))
        .order_by(call_tasks.c.id)
    )
    if postgres:
        query = query.with_for_update()
    return {row[0]: TaskRow(*row) for row in session.execute(query)}


def member_rows(session: Session, ids: Sequence[int]) -> dict[int, MemberRow]:
    """The members of ``ids``, by id."""
    postgres = session.get_bind().dialect.name == "postgresql"
    query = select(*_MEMBER_COLUMNS).where(any_of(participants.c.id, ids, postgres))
    return {row[0]: MemberRow(*row) for row in session.execute(query)}
