"""`campaign runs list`: the runs, newest first, with the work each still has.

Core over engine/db/tables, on a Session or a plain Connection: the command reads without
importing sqlalchemy.orm or the models (#18).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from engine.db.reading import Reader
from engine.db.tables.members import programs
from engine.db.tables.runs import campaign_runs
from engine.run_work import RunWork, work_of


@dataclass(frozen=True)
class RunSummary:
    id: int
    campaign: str
    program: str
    fire_key: str
    status: str
    launched_at: datetime
    enrolled: int
    holdout: int
    status_reason: str | None
    # What keeps it from completing (all zero for a finished run).
    work: RunWork


def list_runs(db: Reader, *, campaign: str | None = None, limit: int = 100) -> list[RunSummary]:
    """Runs, newest first, optionally of one campaign."""
    run = campaign_runs.c
    query = (
        select(
            run.id,
            run.campaign,
            programs.c.key,
            run.fire_key,
            run.status,
            run.launched_at,
            run.enrolled_count,
            run.holdout_count,
            run.status_reason,
        )
        .join(programs, programs.c.id == run.program_id)
        .order_by(run.launched_at.desc(), run.id.desc())
        .limit(limit)
    )
    if campaign is not None:
        query = query.where(run.campaign == campaign)
    found = db.execute(query).all()
    work = work_of(db, [row.id for row in found])
    return [
        RunSummary(
            id=row.id,
            campaign=row.campaign,
            program=row.key,
            fire_key=row.fire_key,
            status=row.status,
            launched_at=row.launched_at,
            enrolled=row.enrolled_count,
            holdout=row.holdout_count,
            status_reason=row.status_reason,
            work=work.get(row.id, RunWork()),
        )
        for row in found
    ]
