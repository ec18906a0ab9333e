"""Materialising a planned batch: each action becomes an outbox row (rendered now, in
OUTBOX_COLUMNS order) or a call task; a run whose step fails to render for too many members
is held back (paused) instead."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.sampling import bucket
from engine.sending.content_checks import RENDER_ERROR_MIN, RENDER_ERROR_SHARE, refusal_of
from engine.sending.deadlines import EXPIRED
from engine.sending.outbox import message_uids
from engine.sending.outbox_status import QUEUED, SKIPPED
from engine.sequencing.due import DueRow, Run
from engine.sequencing.render import RenderItem, render_item
from engine.sequencing.rules import Outcome
from engine.templates import Attributes, ParticipantData, Renderer
from engine.variants import pick_variant


@dataclass
class Work:
    """One planned, rendered batch waiting for its write."""

    moves: list[tuple[DueRow, Outcome]]
    messages: list[list[Any]]  # outbox rows in OUTBOX_COLUMNS order
    call_tasks: list[dict[str, Any]]
    pauses: dict[int, str] = field(default_factory=dict)  # run id -> why it is paused


OUTBOX_COLUMNS = (
    "uid",
    "run_id",
    "enrollment_id",
    "participant_id",
    "campaign",
    "step_id",
    "step_index",
    "variant",
    "channel",
    "template",
    "locale",
    "to_address",
    "content",
    "status",
    "status_reason",
    "not_before",
    "attempts",
    "last_error",
    "created_at",
    "updated_at",
    "expires_at",
)


def tally_key(message: Sequence[Any]) -> tuple[Any, ...]:
    """An outbox row's key in outbox_tallies: run, step, channel, variant, status, and the
    reason of a skipped one."""
    status = message[13]
    return (
        message[1],
        message[5],
        message[8],
        message[7],
        status,
        message[14] if status == SKIPPED else None,
    )


def participant_data(row: DueRow) -> ParticipantData:
    return ParticipantData(
        external_id=row.external_id,
        first_name=row.first_name,
        last_name=row.last_name,
        email=row.email,
        phone=row.phone,
        status=row.status,
        locale=row.locale,
        tier=row.tier,
        points_balance=row.points_balance,
        points_expiring=row.points_expiring,
        points_expire_at=row.points_expire_at,
        renewal_date=row.renewal_date,
        attributes=Attributes(row.attributes or {}),
    )


def build_work(
    moves: list[tuple[DueRow, Outcome]],
    runs: Mapping[int, Run | None],
    renderer: Renderer,
    at: datetime,
) -> Work:
    """The outbox rows and call tasks of a planned batch, rendered (in OUTBOX_COLUMNS order),
    with the runs to pause for render errors (:func:`_hold_back`)."""
    messages: list[list[Any]] = []
    call_tasks: list[dict[str, Any]] = []
    wanted = sum(1 for _, o in moves for a in o.actions)
    uids = message_uids(wanted)
    # (run, step index) -> [members rendered, render errors]
    shares: defaultdict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for row, outcome in moves:
        if not outcome.actions:
            continue
        run = runs[row.run_id]
        assert run is not None
        participant: ParticipantData | None = None
        for action in outcome.actions:
            step = run.steps[action.step_index]
            if step.channel == "call":
                call_tasks.append(
                    {
                        "kind": "campaign",
                        "run_id": row.run_id,
                        "enrollment_id": row.id,
                        "participant_id": row.participant_id,
                        "campaign": run.campaign,
                        "step_id": step.id,
                        "step_index": action.step_index,
                        "script": step.script,
                        "team": step.team,
                        "status": "closed" if action.expired else "open",
                        "close_reason": EXPIRED if action.expired else None,
                        "due_at": action.due,
                        "expires_at": action.expires_at,
                        "attempts": 0,
                        "max_attempts": step.max_attempts,
                        "created_at": at,
                        "updated_at": at,
                    }
                )
                continue
            variant: str | None = None
            if step.variants:
                chosen = pick_variant(
                    step.variants, bucket(row.sample_key, run.salts[action.step_index])
                )
                variant, template = chosen.name, chosen.template
            else:
                assert step.template is not None
                template = step.template
            address = row.email if step.channel == "email" else row.phone
            status, reason, content, error = QUEUED, None, "{}", None
            if action.expired:
                status, reason = SKIPPED, EXPIRED
            elif not address:
                status, reason = SKIPPED, "no_address"
            else:
                if participant is None:
                    participant = participant_data(row)
                rendered, error = render_item(
                    renderer,
                    RenderItem(
                        step.channel,
                        template,
                        row.locale,
                        participant,
                        row.participant_id,
                        run.program_name,
                        run.campaign,
                        run.definition.description,
                        step.id,
                        action.step_index == run.first_sms,
                        run.sms_opt_out_notice,
                        step.sms_max_segments,
                    ),
                )
                shares[(row.run_id, action.step_index)][0] += 1
                if rendered is None:
                    status, reason = SKIPPED, refusal_of(error)
                    if reason == "render_error":
                        shares[(row.run_id, action.step_index)][1] += 1
                else:
                    content = rendered
            # In OUTBOX_COLUMNS order.
            messages.append(
                [
                    uids[len(messages)],
                    row.run_id,
                    row.id,
                    row.participant_id,
                    run.campaign,
                    step.id,
                    action.step_index,
                    variant,
                    step.channel,
                    template,
                    row.locale,
                    address,
                    content,
                    status,
                    reason,
                    action.due,
                    0,
                    error,
                    at,
                    at,
                    action.expires_at,
                ]
            )
    work = Work(moves, messages, call_tasks)
    return _hold_back(work, shares, runs)


def _hold_back(
    work: Work,
    shares: Mapping[tuple[int, int], list[int]],
    runs: Mapping[int, Run | None],
) -> Work:
    """Pause a run when too many of one step's members in this batch failed to render
    (a broken template or a field it needs missing for many: fixing it and resuming must
    not find the audience already spent), and leave that run's enrollments of the batch
    where they are. A few render errors are the members' data: skipped with the reason."""
    for (run_id, index), (rendered, errors) in shares.items():
        if errors < RENDER_ERROR_MIN or errors <= rendered * RENDER_ERROR_SHARE:
            continue
        if run_id in work.pauses:
            continue
        run = runs[run_id]
        step = run.steps[index].id if run is not None else str(index)
        work.pauses[run_id] = (
            f"paused by the sequencer: {errors} of {rendered} members of step {step} "
            f"could not be rendered (first: {_first_error(work, run_id)}); fix the "
            "template or the data, then resume"
        )
    if not work.pauses:
        return work
    held = set(work.pauses)
    work.moves = [(row, o) for row, o in work.moves if row.run_id not in held]
    work.messages = [m for m in work.messages if m[1] not in held]
    work.call_tasks = [t for t in work.call_tasks if t["run_id"] not in held]
    return work


def _first_error(work: Work, run_id: int) -> str:
    for message in work.messages:
        if message[1] == run_id and message[14] == "render_error":
            return str(message[17])[:300]
    return "?"
