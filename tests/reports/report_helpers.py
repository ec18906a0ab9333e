"""Small builders for report and conversion tests: runs, enrollments, outbox rows, call tasks.

Other areas write these tables in production (sequencing, dispatch, webhooks, calls); the
report tests insert rows directly so every figure is known by construction.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from engine.db.models import (
    CallTask,
    CampaignRun,
    Enrollment,
    OutboxMessage,
    Participant,
    Program,
)
from engine.testing.fakes import make_event, make_participant

_n = itertools.count(1)

DEFINITION = """\
name: {name}
program: loyalty
audience: {{field: status, eq: active}}
holdout_percent: 20
goal: {{events: [{events}], window: {window}}}
steps:
  - id: email-1
    channel: email
    variants: [{{name: a, template: t-a}}, {{name: b, template: t-b}}]
  - {{id: sms-1, channel: sms, template: t-sms, delay: 3d}}
  - {{id: call-1, channel: call, script: s-call, delay: 7d}}
"""


def make_run(
    session: Session,
    program: Program,
    *,
    at: datetime,
    name: str = "renewal-test",
    events: str = "renewal, redemption",
    window: str = "30d",
    fire_key: str | None = None,
    status: str = "active",
) -> CampaignRun:
    source = DEFINITION.format(name=name, events=events, window=window)
    run = CampaignRun(
        campaign=name,
        program_id=program.id,
        definition_hash=uuid.uuid5(uuid.NAMESPACE_URL, source).hex * 2,
        definition_source=source,
        fire_key=fire_key or f"once-{next(_n)}",
        status=status,
        launched_at=at,
        enrolled_count=0,
        holdout_count=0,
    )
    session.add(run)
    session.flush()
    return run


def enroll(
    session: Session,
    run: CampaignRun,
    participant: Participant,
    *,
    group: str = "treatment",
    at: datetime | None = None,
    state: str = "active",
) -> Enrollment:
    when = at or run.launched_at
    enrollment = Enrollment(
        run_id=run.id,
        campaign=run.campaign,
        participant_id=participant.id,
        group=group,
        enrolled_at=when,
        state=state,
        next_action_at=when if group == "treatment" and state == "active" else None,
        next_step_index=0,
    )
    session.add(enrollment)
    # What the launch records with the run (the campaign report reads these counts).
    run.enrolled_count += 1
    if group == "holdout":
        run.holdout_count += 1
    session.flush()
    return enrollment


def message(
    session: Session,
    enrollment: Enrollment,
    *,
    step: str = "email-1",
    channel: str = "email",
    status: str = "delivered",
    at: datetime,
    variant: str | None = None,
    status_reason: str | None = None,
    opened: bool = False,
    clicked: bool = False,
    step_index: int = 0,
) -> OutboxMessage:
    """An outbox row in ``status``; timestamps follow from the status (sent at ``at``)."""
    left = status in ("sent", "delivered", "bounced") or (status == "failed" and opened)
    row = OutboxMessage(
        uid=uuid.uuid4().hex,
        run_id=enrollment.run_id,
        enrollment_id=enrollment.id,
        participant_id=enrollment.participant_id,
        campaign=enrollment.campaign,
        step_id=step,
        step_index=step_index,
        variant=variant,
        channel=channel,
        template="t",
        to_address="x@example.com",
        content={},
        status=status,
        status_reason=status_reason,
        not_before=at,
        created_at=at,
        updated_at=at,
        sent_at=at if left else None,
        delivered_at=at + timedelta(minutes=1) if status == "delivered" else None,
        opened_at=at + timedelta(hours=1) if opened else None,
        clicked_at=at + timedelta(hours=2) if clicked else None,
    )
    session.add(row)
    session.flush()
    return row


def call_task(
    session: Session,
    enrollment: Enrollment,
    *,
    at: datetime,
    step: str = "call-1",
    status: str = "open",
    reached_at: datetime | None = None,
    agent: str | None = None,
    attempts: int = 0,
    outcome: str | None = None,
) -> CallTask:
    task = CallTask(
        kind="campaign",
        run_id=enrollment.run_id,
        enrollment_id=enrollment.id,
        participant_id=enrollment.participant_id,
        campaign=enrollment.campaign,
        step_id=step,
        step_index=2,
        script="s-call",
        status=status,
        due_at=at,
        attempts=attempts,
        claimed_by=agent,
        reached_at=reached_at,
        outcome=outcome,
        created_at=at,
        updated_at=at,
    )
    session.add(task)
    session.flush()
    return task


def members(session: Session, program: Program, count: int, *, at: datetime) -> list[Participant]:
    return [make_participant(session, program, at=at) for _ in range(count)]


def event(
    session: Session,
    participant: Participant,
    type: str,
    at: datetime,
    *,
    points: int | None = None,
    amount: str | None = None,
    source: str = "import:events.csv",
) -> Any:
    return make_event(
        session,
        participant,
        type=type,
        occurred_at=at,
        points=points,
        amount=Decimal(amount) if amount is not None else None,
        source=source,
    )
