"""What work a campaign run still has: the one definition of "finished" (DESIGN.md "A run's
life").

A run has work while any treatment enrollment has steps left, any message is pending
(queued, sending, unknown) or any call task is open (a campaign call, a callback, a recycled
attempt; claimed ones too: an agent is on the call). Its sends can be finished while its calls
are not. An SMS reply's follow-up (a ``follow_up`` task with no parent) is not the run's work:
it is answered whatever became of the run, and does not keep it open.

Each question is an EXISTS over a partial index by run (0014), so the sequencer can ask it of
every active run on each advance however many finished rows a run holds. The predicates are
literal SQL, the same text as the indexes' WHERE: SQLite uses a partial index only when the
query names its condition, which a bound parameter does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, not_, or_, select, text
from sqlalchemy.orm import Session

from engine.db.models import CallTask, Enrollment, OutboxMessage

# The partial indexes' conditions (models.py, migrations/versions/0014).
OPEN_ENROLLMENT = text("enrollments.state = 'active' AND enrollments.\"group\" = 'treatment'")
PENDING_MESSAGE = text("outbox_messages.status IN ('queued', 'sending', 'unknown')")
OPEN_TASK = text("call_tasks.status IN ('open', 'claimed')")
# Task statuses that are work (OPEN_TASK), for Python-side filters.
OPEN_TASK_STATUSES = ("open", "claimed")


def _run_task() -> ColumnElement[bool]:
    """An open task that is its run's work (an inbound reply's follow-up is not)."""
    return and_(
        OPEN_TASK,
        not_(and_(CallTask.kind == "follow_up", CallTask.parent_task_id.is_(None))),
    )


def has_work(run_id: Any) -> ColumnElement[bool]:
    """SQL: run ``run_id`` (a value or a column such as ``CampaignRun.id``) has work left."""
    return or_(
        exists(select(1).where(Enrollment.run_id == run_id, OPEN_ENROLLMENT)),
        exists(select(1).where(OutboxMessage.run_id == run_id, PENDING_MESSAGE)),
        exists(select(1).where(CallTask.run_id == run_id, _run_task())),
    )


@dataclass(frozen=True)
class RunWork:
    """What keeps a run from completing."""

    enrollments_with_steps_left: int = 0
    pending_messages: int = 0
    open_call_tasks: int = 0

    @property
    def any(self) -> bool:
        return bool(
            self.enrollments_with_steps_left or self.pending_messages or self.open_call_tasks
        )

    def describe(self) -> str:
        parts = [
            f"{count} {label}"
            for count, label in (
                (self.enrollments_with_steps_left, "enrollment(s) with steps left"),
                (self.pending_messages, "pending message(s)"),
                (self.open_call_tasks, "open call task(s)"),
            )
            if count
        ]
        return ", ".join(parts) if parts else "no work left"


def work_of(session: Session, run_ids: Iterable[int]) -> dict[int, RunWork]:
    """The work each of ``run_ids`` still has (runs with none are absent), counted over the
    partial indexes: the size of the work left, not of the run."""
    ids = sorted(set(run_ids))
    if not ids:
        return {}
    counts: dict[int, list[int]] = {}
    for position, query in enumerate(
        (
            select(Enrollment.run_id, func.count())
            .where(Enrollment.run_id.in_(ids), OPEN_ENROLLMENT)
            .group_by(Enrollment.run_id),
            select(OutboxMessage.run_id, func.count())
            .where(OutboxMessage.run_id.in_(ids), PENDING_MESSAGE)
            .group_by(OutboxMessage.run_id),
            select(CallTask.run_id, func.count())
            .where(CallTask.run_id.in_(ids), _run_task())
            .group_by(CallTask.run_id),
        )
    ):
        for run_id, count in session.execute(query).all():
            if run_id is not None:
                counts.setdefault(int(run_id), [0, 0, 0])[position] = int(count)
    return {run_id: RunWork(*values) for run_id, values in counts.items()}


__all__ = ["OPEN_TASK_STATUSES", "RunWork", "has_work", "work_of"]
