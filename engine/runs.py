"""Campaign runs after launch: list, show, pause, resume, cancel.

A run's ``status`` is the switch the sequencer obeys (see models.CampaignRun):

- ``active``: enrollments advance, messages are sent and calls listed.
- ``paused``: nothing is sent or listed for the run; its open enrollments keep their place
  and still count as "in the campaign" (no re-enrollment elsewhere). ``resume`` continues.
- ``cancelled``: final. Open enrollments are exited (``exit_reason`` 'run cancelled: ...') and
  queued outbox messages skipped (``run_cancelled``); a cancelled run cannot be resumed.
- ``completed``: final; set by the sequencer when no open enrollment is left.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from engine.clock import ensure_utc
from engine.db.models import CampaignRun, Enrollment, OutboxMessage, Program
from engine.errors import InputError, NotFoundError


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


@dataclass(frozen=True)
class RunDetail:
    id: int
    campaign: str
    program: str
    fire_key: str
    status: str
    status_reason: str | None
    status_changed_at: datetime | None
    launched_at: datetime
    definition_hash: str
    enrolled: int
    holdout: int
    # {"treatment": {"active": n, "converted": n, ...}, "holdout": {...}}
    by_group_state: dict[str, dict[str, int]]


@dataclass(frozen=True)
class StatusChange:
    run_id: int
    campaign: str
    before: str
    after: str
    reason: str | None
    exited: int = 0


def list_runs(
    session: Session, *, campaign: str | None = None, limit: int = 100
) -> list[RunSummary]:
    """Runs, newest first, optionally of one campaign."""
    query = (
        select(CampaignRun, Program.key)
        .join(Program, Program.id == CampaignRun.program_id)
        .order_by(CampaignRun.launched_at.desc(), CampaignRun.id.desc())
        .limit(limit)
    )
    if campaign is not None:
        query = query.where(CampaignRun.campaign == campaign)
    return [
        RunSummary(
            id=run.id,
            campaign=run.campaign,
            program=program_key,
            fire_key=run.fire_key,
            status=run.status,
            launched_at=run.launched_at,
            enrolled=run.enrolled_count,
            holdout=run.holdout_count,
            status_reason=run.status_reason,
        )
        for run, program_key in session.execute(query).all()
    ]


def _get(session: Session, run_id: int, *, lock: bool = False) -> CampaignRun:
    query = select(CampaignRun).where(CampaignRun.id == run_id)
    if lock:
        query = query.with_for_update()
    run = session.scalar(query)
    if run is None:
        raise NotFoundError(f"no campaign run {run_id}; see `campaign runs list`")
    return run


def show_run(session: Session, run_id: int) -> RunDetail:
    run = _get(session, run_id)
    program_key = session.scalar(select(Program.key).where(Program.id == run.program_id)) or ""
    by_group_state: dict[str, dict[str, int]] = {}
    for group, state, count in session.execute(
        select(Enrollment.group, Enrollment.state, func.count())
        .where(Enrollment.run_id == run_id)
        .group_by(Enrollment.group, Enrollment.state)
        .order_by(Enrollment.group, Enrollment.state)
    ).all():
        by_group_state.setdefault(group, {})[state] = int(count)
    return RunDetail(
        id=run.id,
        campaign=run.campaign,
        program=program_key,
        fire_key=run.fire_key,
        status=run.status,
        status_reason=run.status_reason,
        status_changed_at=run.status_changed_at,
        launched_at=run.launched_at,
        definition_hash=run.definition_hash,
        enrolled=run.enrolled_count,
        holdout=run.holdout_count,
        by_group_state=by_group_state,
    )


def _describe(run: CampaignRun) -> str:
    text = f"run {run.id} ({run.campaign}) is {run.status}"
    if run.status_changed_at is not None:
        text += f" since {run.status_changed_at.isoformat()}"
    if run.status_reason:
        text += f" ({run.status_reason})"
    return text


def pause_run(
    session: Session, run_id: int, *, at: datetime, reason: str | None = None
) -> StatusChange:
    """Stop sending for a run until it is resumed."""
    run = _get(session, run_id, lock=True)
    if run.status != "active":
        raise InputError(f"cannot pause: {_describe(run)}; only an active run can be paused")
    return _set(run, "paused", reason, at)


def resume_run(session: Session, run_id: int, *, at: datetime) -> StatusChange:
    """Continue a paused run."""
    run = _get(session, run_id, lock=True)
    if run.status == "cancelled":
        raise InputError(
            f"cannot resume: {_describe(run)}; a cancelled run is final. Launch the campaign "
            "again under a new name to reach these members"
        )
    if run.status != "paused":
        raise InputError(f"cannot resume: {_describe(run)}; only a paused run can be resumed")
    return _set(run, "active", None, at)


def cancel_run(
    session: Session, run_id: int, *, at: datetime, reason: str | None = None
) -> StatusChange:
    """End a run for good: nothing more is sent; open enrollments are exited."""
    run = _get(session, run_id, lock=True)
    if run.status not in ("active", "paused"):
        raise InputError(f"cannot cancel: {_describe(run)}")
    change = _set(run, "cancelled", reason, at)
    exit_reason = "run cancelled" + (f": {reason}" if reason else "")
    result = session.execute(
        update(Enrollment)
        .where(Enrollment.run_id == run_id, Enrollment.state == "active")
        .values(state="exited", exit_reason=exit_reason, next_action_at=None)
        .execution_options(synchronize_session=False)
    )
    exited = int(getattr(result, "rowcount", 0) or 0)
    # Nothing more goes out: queued messages are skipped now (a dispatcher that claimed some a
    # moment ago finishes those; the dispatcher also skips any it finds later).
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.run_id == run_id, OutboxMessage.status == "queued")
        .values(status="skipped", status_reason="run_cancelled", updated_at=ensure_utc(at))
        .execution_options(synchronize_session=False)
    )
    return StatusChange(change.run_id, change.campaign, change.before, change.after, reason, exited)


def _set(run: CampaignRun, status: str, reason: str | None, at: datetime) -> StatusChange:
    before = run.status
    run.status = status
    run.status_reason = reason
    run.status_changed_at = ensure_utc(at)
    return StatusChange(run.id, run.campaign, before, status, reason)


__all__ = [
    "RunDetail",
    "RunSummary",
    "StatusChange",
    "cancel_run",
    "list_runs",
    "pause_run",
    "resume_run",
    "show_run",
]
