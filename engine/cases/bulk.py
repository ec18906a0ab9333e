"""The cases a batch of calls opens (a dialer import chunk), written together: one INSERT of
cases, one of their ``opened`` events and one of their follow-up tasks, instead of about ten
ORM statements per case.

Only what is certain to open a new case waits: a complaint or escalation on a task no case
follows, of a member who has no active case (read once for the batch) and no other case work
in the batch. Everything else goes through :func:`engine.cases.hooks.after_call` as one call
at a time would, after what waits is written (so ids come in the same order). The rows are
those :func:`engine.cases.store.open_case` writes for such a call, the same values computed by
the same functions; tests/calls/test_calls_dialer_same_rows.py compares them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.calls.batch_rows import MemberRow, TaskRow
from engine.cases.config import DEFAULT_RULES, ESCALATION
from engine.cases.hooks import RulesFor
from engine.cases.states import ACTIVE, due_at
from engine.cases.store import CASE_TASK_MAX_ATTEMPTS, next_follow_up_at
from engine.db.models import CallTask, Case, CaseEvent, Participant, Program
from engine.db.queries import among
from engine.errors import EngineError

OPENING_EFFECTS = ("complaint", "escalate")


class CaseRace(EngineError):
    """Another transaction opened an active case the batch was about to open: the caller
    rolls back and takes the calls one at a time (open_case then joins that case)."""


@dataclass
class _Opening:
    case: dict[str, Any]
    seq: int  # the call's caller log entry (its id is known once the entries are written)
    task: CallTask | TaskRow  # the call's task
    adopt: bool  # an escalated task, already on the team's list, is the case's follow-up
    follow_up_due: datetime


class CaseOpenings:
    """New cases of a batch of calls of ``participant_ids``, held until :meth:`write`."""

    def __init__(self, session: Session, participant_ids: Iterable[int]) -> None:
        self.session = session
        self.members = set(participant_ids)
        # Members with a case being worked, or with case work in this batch: their calls go
        # through after_call one at a time (join, follow-up, a second complaint).
        self.busy: set[int] = set(
            session.scalars(
                select(Case.participant_id).where(
                    among(session, Case.participant_id, sorted(self.members)),
                    Case.status.in_(sorted(ACTIVE)),
                )
            )
        )
        self.waiting: list[_Opening] = []
        self.waiting_members: set[int] = set()

    def takes(self, task: CallTask | TaskRow, effect: str, participant_id: int) -> bool:
        """Whether the call surely opens a new case (then :meth:`add` it)."""
        return (
            effect in OPENING_EFFECTS
            and task.case_id is None
            and participant_id in self.members
            and participant_id not in self.busy
        )

    def touched(self, participant_id: int) -> None:
        """The member's call went through after_call: their next calls do too."""
        self.busy.add(participant_id)

    def waits_for(self, participant_id: int) -> bool:
        return participant_id in self.waiting_members

    def add(
        self,
        *,
        task: CallTask | TaskRow,
        participant: Participant | MemberRow,
        program: Program,
        effect: str,
        fields: Mapping[str, Any],
        agent: str,
        at: datetime,
        seq: int,
        rules_for: RulesFor | None = None,
    ) -> None:
        """What open_case (engine/cases/store.py) writes for this call, as after_call gives
        it: a call source, owner the agent (complaint) or the team (escalation)."""
        escalation = effect == "escalate"
        category = ESCALATION if escalation else str(fields.get("category") or "other")
        category = category.strip().lower()
        summary = str(fields.get("reason" if escalation else "summary") or "") or None
        summary = (summary or "").strip() or None
        rules = rules_for(program.key) if rules_for is not None else DEFAULT_RULES
        case = {
            "program_id": participant.program_id,
            "participant_id": participant.id,
            "category": category,
            "summary": summary,
            "status": "open",
            "source": "call",
            "owner_agent": None if escalation else agent,
            "owner_team": str(fields["team"]).strip().lower() if escalation else None,
            "opened_by": agent,
            "opened_at": at,
            "due_at": due_at(at, rules.business_days(category), program.timezone),
            "reopened": 0,
            "updated_at": at,
        }
        self.waiting.append(
            _Opening(
                case=case,
                seq=seq,
                task=task,
                adopt=escalation and task.status == "open",
                follow_up_due=next_follow_up_at(at, program.timezone),
            )
        )
        self.waiting_members.add(participant.id)
        self.busy.add(participant.id)

    def seqs(self) -> list[int]:
        return [opening.seq for opening in self.waiting]

    def write(self, log_ids: Mapping[int, int]) -> None:
        """Insert the waiting cases, their events and follow-up tasks (``log_ids``: caller log
        entry id by seq, the entries written already)."""
        if not self.waiting:
            return
        connection = self.session.connection()
        try:
            connection.execute(insert(Case), [opening.case for opening in self.waiting])
        except IntegrityError as exc:  # PostgreSQL: a case opened by hand since busy was read
            raise CaseRace("a case of a member of this batch was opened meanwhile") from exc
        # Each is its member's one active case of its category (a unique index): found by it
        # with one query (SQLite gives RETURNING of an executemany one statement per row).
        ids = {
            (participant, category): ident
            for ident, participant, category in connection.execute(
                select(Case.id, Case.participant_id, Case.category).where(
                    Case.participant_id.in_(sorted(self.waiting_members)),
                    Case.status.in_(sorted(ACTIVE)),
                )
            )
        }
        events, tasks = [], []
        for opening in self.waiting:
            case_id = ids[opening.case["participant_id"], opening.case["category"]]
            case, at = opening.case, opening.case["opened_at"]
            events.append(
                {
                    "case_id": case_id,
                    "at": at,
                    "kind": "opened",
                    "by": case["opened_by"],
                    "status_from": None,
                    "status_to": "open",
                    "caller_log_id": log_ids[opening.seq],
                    "call_task_id": opening.task.id,
                    "text": case["summary"],
                }
            )
            if opening.adopt:
                opening.task.case_id = case_id
                continue
            tasks.append(
                {
                    "kind": "follow_up",
                    "run_id": None,
                    "participant_id": case["participant_id"],
                    "campaign": None,
                    "status": "open",
                    "due_at": opening.follow_up_due,
                    "attempts": 0,
                    "max_attempts": CASE_TASK_MAX_ATTEMPTS,
                    "created_at": at,
                    "updated_at": at,
                    "case_id": case_id,
                    "team": case["owner_team"],
                    "assigned_agent": case["owner_agent"],
                }
            )
        connection.execute(insert(CaseEvent), events)
        if tasks:
            connection.execute(insert(CallTask), tasks)
        self.waiting, self.waiting_members = [], set()
