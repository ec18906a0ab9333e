"""Campaign runs after launch: list, show, pause, resume, cancel.

A run's ``status`` is the switch the sequencer obeys (see models.CampaignRun and DESIGN.md
"A run's life"):

- ``active``: while the run has work (engine/run_work.py: enrollments with steps left,
  pending messages, open call tasks): enrollments advance, messages are sent, calls listed.
- ``paused``: nothing is sent or listed for the run; its open enrollments keep their place
  and still count as "in the campaign" (no re-enrollment elsewhere). ``resume`` continues.
- ``cancelled``: final. Open enrollments are exited (``exit_reason`` 'run cancelled: ...'),
  queued outbox messages skipped and open call tasks closed (both ``run_cancelled``); a
  cancelled run cannot be resumed.
- ``completed``: final; set by the sequencer when the run has no work left.

Pause and cancel apply to every run that still has work, whatever its status says (a run
completed by an older version with its last messages queued included).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from engine.clock import ensure_utc
from engine.db.models import CallTask, CampaignRun, Enrollment, OutboxMessage, Program
from engine.errors import InputError, NotFoundError
from engine.run_listing import RunSummary, list_runs
from engine.run_work import RunWork, work_of

# close_reason / status_reason of what a cancel stopped.
RUN_CANCELLED = "run_cancelled"


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
    work: RunWork


@dataclass(frozen=True)
class StatusChange:
    run_id: int
    campaign: str
    before: str
    after: str
    reason: str | None
    exited: int = 0
    skipped_messages: int = 0
    closed_tasks: int = 0
    # Tasks an agent holds right now: the agent's log closes them (engine/calls/log.py).
    tasks_with_agents: int = 0

    def words(self, *, with_reason: bool = False) -> str:
        """The change as `campaign runs pause|resume|cancel` says it (the console adds the
        reason, which its page does not show elsewhere)."""
        text = f"Run {self.run_id} ({self.campaign}): {self.before} -> {self.after}"
        if with_reason and self.reason:
            text += f" ({self.reason})"
        if self.exited:
            text += f"; {self.exited:,} open enrollments exited"
        if self.skipped_messages:
            text += f"; {self.skipped_messages:,} queued messages skipped"
        if self.closed_tasks:
            text += f"; {self.closed_tasks:,} open call tasks closed"
        if self.tasks_with_agents:
            text += f"; {self.tasks_with_agents:,} call tasks held by agents close when logged"
        return text + "."


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
        work=work_of(session, [run.id]).get(run.id, RunWork()),
    )


def _describe(run: CampaignRun) -> str:
    text = f"run {run.id} ({run.campaign}) is {run.status}"
    if run.status_changed_at is not None:
        text += f" since {run.status_changed_at.isoformat()}"
    if run.status_reason:
        text += f" ({run.status_reason})"
    return text


def _still_has_work(session: Session, run: CampaignRun, verb: str) -> None:
    """A completed run may be paused or cancelled only while it still has work (a run an
    older version completed with messages queued); otherwise there is nothing to stop."""
    if run.status == "completed" and not work_of(session, [run.id]):
        raise InputError(f"cannot {verb}: {_describe(run)}; it has no work left")


def pause_run(
    session: Session, run_id: int, *, at: datetime, reason: str | None = None
) -> StatusChange:
    """Stop sending and calling for a run that still has work, until it is resumed."""
    run = _get(session, run_id, lock=True)
    if run.status == "paused":
        raise InputError(f"cannot pause: {_describe(run)} already")
    if run.status == "cancelled":
        raise InputError(f"cannot pause: {_describe(run)}; a cancelled run is final")
    _still_has_work(session, run, "pause")
    return _set(run, "paused", reason, at)


def resume_run(session: Session, run_id: int, *, at: datetime) -> StatusChange:
    """Continue a paused run (the sequencer completes it at once if it has no work left)."""
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
    """End a run for good: nothing more is sent or called; open enrollments are exited, queued
    messages skipped and open call tasks closed."""
    run = _get(session, run_id, lock=True)
    if run.status == "cancelled":
        raise InputError(f"cannot cancel: {_describe(run)}")
    _still_has_work(session, run, "cancel")
    at = ensure_utc(at)
    change = _set(run, "cancelled", reason, at)
    exit_reason = "run cancelled" + (f": {reason}" if reason else "")
    exited = _rowcount(
        session.execute(
            update(Enrollment)
            .where(Enrollment.run_id == run_id, Enrollment.state == "active")
            .values(state="exited", exit_reason=exit_reason, next_action_at=None)
            .execution_options(synchronize_session=False)
        )
    )
    # Nothing more goes out: queued messages are skipped now (a dispatcher that claimed some a
    # moment ago finishes those; the dispatcher also skips any it finds later).
    skipped = _rowcount(
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.run_id == run_id, OutboxMessage.status == "queued")
            .values(status="skipped", status_reason=RUN_CANCELLED, updated_at=at)
            .execution_options(synchronize_session=False)
        )
    )
    # Nobody is called for it any more: its open tasks (callbacks and recycled attempts too,
    # and claims whose lease ran out) close with the reason. A task an agent holds now is left
    # to the agent, whose log closes it; a member's SMS reply is answered all the same.
    closable = or_(
        CallTask.status == "open", and_(CallTask.status == "claimed", CallTask.claimed_until < at)
    )
    inbound = and_(CallTask.kind == "follow_up", CallTask.parent_task_id.is_(None))
    closed = _rowcount(
        session.execute(
            update(CallTask)
            .where(CallTask.run_id == run_id, closable, ~inbound)
            .values(
                status="closed",
                close_reason=RUN_CANCELLED,
                claimed_by=None,
                claimed_until=None,
                updated_at=at,
            )
            .execution_options(synchronize_session=False)
        )
    )
    held = int(
        session.scalar(
            select(func.count())
            .select_from(CallTask)
            .where(CallTask.run_id == run_id, CallTask.status == "claimed", ~inbound)
        )
        or 0
    )
    return StatusChange(
        change.run_id,
        change.campaign,
        change.before,
        change.after,
        reason,
        exited=exited,
        skipped_messages=skipped,
        closed_tasks=closed,
        tasks_with_agents=held,
    )


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _set(run: CampaignRun, status: str, reason: str | None, at: datetime) -> StatusChange:
    before = run.status
    run.status = status
    run.status_reason = reason
    run.status_changed_at = ensure_utc(at)
    return StatusChange(run.id, run.campaign, before, status, reason)


__all__ = [
    "RUN_CANCELLED",
    "RunDetail",
    "RunSummary",
    "StatusChange",
    "cancel_run",
    "list_runs",
    "pause_run",
    "resume_run",
    "show_run",
]
