"""What work a campaign run still has: the one definition of "finished" (DESIGN.md "A run's
life").

A run has work while any treatment enrollment has steps left, any message is pending
(queued, sending, unknown) or any call task is open (a campaign call, a callback, a recycled
attempt; claimed ones too: an agent is on the call). Its sends can be finished while its calls
are not. An SMS reply's follow-up (a ``follow_up`` task with no parent) is not the run's work:
it is answered whatever became of the run, and does not keep it open.

Each question is an EXISTS over a partial index by run (0014), so the sequencer can ask it of
every active run on each advance however many finished rows a run holds. The conditions are
literal SQL, the same text as the indexes' WHERE: SQLite uses a partial index only when the
query names its condition, which a bound parameter does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import TextClause, bindparam, text

from engine.db.reading import Reader, dialect_name

# (table, its index by run, the condition: engine/db/tables, migrations 0014, 0035 and 0038; the
# enrollments' and tasks' indexes are partial, of the rows that are work)
OPEN_ENROLLMENTS = (
    "enrollments",
    "ix_enrollments_open_by_run",
    "enrollments.state = 'active' AND enrollments.\"group\" = 'treatment'",
)
PENDING_MESSAGES = (
    "outbox_messages",
    # (run_id, status): a probe per pending status.
    "ix_outbox_messages_run_id_status",
    "outbox_messages.status IN ('queued', 'sending', 'unknown')",
)
OPEN_TASKS = (
    "call_tasks",
    "ix_call_tasks_open_queue",  # (run_id, kind, due_at, id): a probe of its run_id
    "call_tasks.status IN ('open', 'claimed')"
    # An inbound SMS reply's follow-up is not its run's work.
    " AND NOT (call_tasks.kind = 'follow_up' AND call_tasks.parent_task_id IS NULL)",
)
# Task statuses that are work, for Python-side filters.
OPEN_TASK_STATUSES = ("open", "claimed")


def _source(work: tuple[str, str, str], dialect: str) -> str:
    """The FROM of one kind of work. SQLite is told the index (INDEXED BY): without statistics
    it may read another index of the table (a run's every row) instead."""
    table, index, _ = work
    return f"{table} INDEXED BY {index}" if dialect == "sqlite" else table


def _any_work(dialect: str) -> str:
    return " OR ".join(
        f"EXISTS (SELECT 1 FROM {_source(work, dialect)}"
        f" WHERE {work[0]}.run_id = campaign_runs.id AND {work[2]})"
        for work in (OPEN_ENROLLMENTS, PENDING_MESSAGES, OPEN_TASKS)
    )


def has_work(dialect: str) -> TextClause:
    """SQL for a statement over ``campaign_runs``: this run has work left."""
    return text(f"({_any_work(dialect)})")


def has_no_work(dialect: str) -> TextClause:
    """SQL for a statement over ``campaign_runs``: this run has no work left."""
    return text(f"NOT ({_any_work(dialect)})")


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
            f"{count:,} {label}"
            for count, label in (
                (self.enrollments_with_steps_left, "enrollment(s) with steps left"),
                (self.pending_messages, "pending message(s)"),
                (self.open_call_tasks, "open call task(s)"),
            )
            if count
        ]
        return ", ".join(parts) if parts else "no work left"


def work_of(db: Reader, run_ids: Iterable[int]) -> dict[int, RunWork]:
    """The work each of ``run_ids`` still has (runs with none are absent), counted over the
    partial indexes: the size of the work left, not of the run."""
    ids = sorted(set(run_ids))
    if not ids:
        return {}
    dialect = dialect_name(db)
    counts: dict[int, list[int]] = {}
    for position, work in enumerate((OPEN_ENROLLMENTS, PENDING_MESSAGES, OPEN_TASKS)):
        query = text(
            f"SELECT run_id, count(*) FROM {_source(work, dialect)}"
            f" WHERE run_id IN :ids AND {work[2]} GROUP BY run_id"
        ).bindparams(bindparam("ids", expanding=True))
        for run_id, count in db.execute(query, {"ids": ids}).all():
            if run_id is not None:
                counts.setdefault(int(run_id), [0, 0, 0])[position] = int(count)
    return {run_id: RunWork(*values) for run_id, values in counts.items()}


__all__ = ["OPEN_TASK_STATUSES", "RunWork", "has_no_work", "has_work", "work_of"]
