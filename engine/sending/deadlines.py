"""Deadlines and standing conditions: nothing sent late, nothing sent that should not be.

**Deadline.** Every email/SMS step has one: ``expires_after`` (default 3 days) from when the
step came due, and, with ``expires_before: <field>`` (``renewal_date``, ``points_expire_at``),
no later than the start of that day in the member's zone (all candidate zones: the earliest
instant wins, so no reading of the zone sends on the day itself), else the program's. A call
step has one only when it says ``expires_after`` or ``expires_before``. The sequencer stores it
on the row it makes (``outbox_messages.expires_at``, ``call_tasks.expires_at``) and does not
queue a step already past it (``skipped``/``expired``; a call task is made ``closed``/
``expired``); the dispatcher's gate skips a queued message past it (:func:`send_time_refusals`)
and call lists close an open task past it (:func:`close_expired_call_tasks`).

**Spacing at send time**: a queued message whose enrollment has an earlier message that has
not gone yet waits (``RECHECK``), and one whose earlier message went late waits until the
steps' delays after it actually went (only where the campaign spaces the two steps); see
engine/sequencing/ for the sequencer's half of the rule.

**Standing conditions** (engine/definitions/standing.py): re-checked when a step falls due
(the enrollment exits), in the dispatcher's gate (``skipped``/``no_longer_eligible``) and when
an agent claims a call (closed ``not callable: no_longer_eligible``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    case,
    not_,
    null,
    select,
    text,
    update,
)

from engine.db.queries import int_array
from engine.db.reading import dialect_name
from engine.db.tables.calls import call_tasks
from engine.db.tables.members import participants, programs
from engine.db.tables.outbox import outbox_messages
from engine.db.tables.runs import campaign_runs
from engine.db.types import UTCDateTime

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from engine.audience import BoundAt
    from engine.definitions.filters import Filter
    from engine.definitions.schema import CampaignDefinition, Step

EXPIRED = "expired"
NO_LONGER_ELIGIBLE = "no_longer_eligible"


# --------------------------------------------------------------------------- pure


def start_of_day(day: date, zones: Sequence[str]) -> datetime:
    """The earliest instant at which ``day`` begins in any of ``zones``."""
    return min(datetime.combine(day, time(0), tzinfo=ZoneInfo(zone)) for zone in zones)


def message_deadline(
    due: datetime, step: Step, dates: Mapping[str, Any], zones: Sequence[str]
) -> datetime | None:
    """The step's deadline for one member (see the module docstring); None: no deadline."""
    candidates: list[datetime] = []
    after = step.deadline_after
    if after is not None:
        candidates.append(due + after)
    if step.expires_before is not None:
        value = dates.get(step.expires_before)
        if isinstance(value, datetime):
            value = value.date()
        if isinstance(value, date) and zones:
            candidates.append(start_of_day(value, zones))
    return min(candidates) if candidates else None


def expired(deadline: datetime | None, at: datetime) -> bool:
    return deadline is not None and deadline <= at


def describe_deadline(step: Step) -> str:
    """The step's deadline in words, for plan and explain: '3d after due, before
    renewal_date', or 'none'."""
    from engine.definitions.durations import format_duration

    parts: list[str] = []
    if step.deadline_after is not None:
        parts.append(f"{format_duration(step.deadline_after)} after due")
    if step.expires_before is not None:
        parts.append(f"before {step.expires_before}")
    return ", ".join(parts) or "none"


# --------------------------------------------------------------------------- standing


# The audience SQL and the definitions' filters (pydantic) are imported when a standing check
# is made: a claim that finds no task makes none (#18).


def _standing(definition: CampaignDefinition) -> Filter | None:
    from engine.definitions.standing import standing_filter

    return standing_filter(definition)


def not_standing(
    conn: Connection | Session,
    definition: CampaignDefinition,
    participant_ids: Iterable[int],
    *,
    at: datetime,
    tz: str,
) -> set[int]:
    """The members among ``participant_ids`` who no longer match the campaign's standing
    conditions (one query)."""
    return not_matching(conn, _standing(definition), participant_ids, at=at, tz=tz)


def not_matching(
    conn: Connection | Session,
    filter_: Filter | None,
    participant_ids: Iterable[int],
    *,
    at: datetime,
    tz: str,
) -> set[int]:
    """The members among ``participant_ids`` who do not match ``filter_`` (a standing filter,
    of the definition's models or a claim form's plain nodes); none when it is None."""
    ids = sorted(set(participant_ids))
    if filter_ is None or not ids:
        return set()
    from engine.audience import audience_condition

    found: set[int] = set()
    condition = audience_condition(filter_, at=at, tz=tz)
    postgres = dialect_name(conn) == "postgresql"
    for start in range(0, len(ids), 5000):
        # The sequencer asks this of every batch of 2,000: binding each id through the ORM's
        # expanding IN cost more than the query. PostgreSQL: one array parameter (the same
        # statement each time, prepared once: engine.db.queries.int_array); SQLite: a literal
        # list of the integers.
        chunk = ids[start : start + 5000]
        among = (
            text("participants.id = ANY(CAST(:ids AS bigint[]))").bindparams(ids=int_array(chunk))
            if postgres
            else text(f"participants.id IN ({', '.join(str(int(i)) for i in chunk)})")
        )
        found.update(conn.scalars(select(participants.c.id).where(among, not_(condition))).all())
    return found


def standing_reason(definition: CampaignDefinition) -> str:
    """The exit reason of a member who no longer matches, naming the fields."""
    from engine.definitions.standing import standing_fields

    filter_ = _standing(definition)
    fields = ", ".join(standing_fields(filter_)) if filter_ is not None else ""
    return f"{NO_LONGER_ELIGIBLE}: no longer matches the audience ({fields})"


def _run_zones(conn: Connection | Session, run_ids: Iterable[int]) -> dict[int, str]:
    ids = sorted(set(run_ids))
    if not ids:
        return {}
    return {
        run_id: str(tz)
        for run_id, tz in conn.execute(
            select(campaign_runs.c.id, programs.c.timezone)
            .join(programs, programs.c.id == campaign_runs.c.program_id)
            .where(campaign_runs.c.id.in_(ids))
        ).all()
    }


def _spacing_holds(
    session: Session,
    rows: Sequence[Any],
    mine: Mapping[int, tuple[int, int, str]],
    at: datetime,
    definitions: Mapping[int, CampaignDefinition],
) -> dict[int, str | datetime]:
    """Claimed messages that must wait for an earlier message of their enrollment: one that
    has not gone yet (``at`` + RECHECK), or one that went late (until the steps' delays
    after it). Only where the campaign spaces the two steps (delays in between)."""
    run_of = {row.id: row.run_id for row in rows}
    spaced: dict[int, tuple[int, int, timedelta]] = {}  # id -> (enrollment, index, gap)
    for message_id, (enrollment_id, index, step_id) in mine.items():
        definition = definitions.get(run_of[message_id])
        if definition is None or index <= 0:
            continue
        steps = definition.steps
        if index >= len(steps) or steps[index].id != step_id:
            continue
        spaced[message_id] = (enrollment_id, index, timedelta(0))
    if not spaced:
        return {}
    earlier: dict[int, list[tuple[int, str, datetime | None]]] = {}
    enrollments = sorted({e for e, _, _ in spaced.values()})
    for start in range(0, len(enrollments), 1000):
        for enrollment_id, index, status, sent_at in session.execute(
            select(
                outbox_messages.c.enrollment_id,
                outbox_messages.c.step_index,
                outbox_messages.c.status,
                outbox_messages.c.sent_at,
            ).where(
                outbox_messages.c.enrollment_id.in_(enrollments[start : start + 1000]),
                outbox_messages.c.id.notin_(list(spaced)),
            )
        ):
            earlier.setdefault(enrollment_id, []).append((index, status, sent_at))
    holds: dict[int, str | datetime] = {}
    for message_id, (enrollment_id, index, _) in spaced.items():
        before = [m for m in earlier.get(enrollment_id, []) if m[0] < index]
        if not before:
            continue
        prior_index, status, sent_at = max(before, key=lambda m: m[0])
        steps = definitions[run_of[message_id]].steps
        gap = sum((step.delay for step in steps[prior_index + 1 : index + 1]), timedelta(0))
        if gap <= timedelta(0):
            continue  # steps meant to go together
        if status in ("queued", "sending"):
            holds[message_id] = at + RECHECK
        elif sent_at is not None and sent_at + gap > at:
            holds[message_id] = sent_at + gap
    return holds


# How long a message waits before its earlier message is looked at again.
RECHECK = timedelta(minutes=15)


def send_time_refusals(
    session: Session,
    rows: Sequence[Any],
    at: datetime,
    definitions: Mapping[int, CampaignDefinition],
) -> dict[int, str | datetime]:
    """The dispatcher gate's check of claimed messages (objects with ``id``, ``run_id``,
    ``participant_id``): outbox id -> ``expired`` (past ``expires_at``),
    ``no_longer_eligible`` (fails the run's standing conditions now), or an instant to wait
    until (an earlier message of the enrollment has not gone yet, or went late: the steps'
    spacing is kept from when it actually went)."""
    if not rows:
        return {}
    ids = sorted({row.id for row in rows})
    refused: dict[int, str | datetime] = {}
    mine: dict[int, tuple[int, int, str]] = {}  # id -> (enrollment, step index, step id)
    for start in range(0, len(ids), 1000):
        for message_id, enrollment_id, index, step_id, expires_at in session.execute(
            select(
                outbox_messages.c.id,
                outbox_messages.c.enrollment_id,
                outbox_messages.c.step_index,
                outbox_messages.c.step_id,
                outbox_messages.c.expires_at,
            ).where(outbox_messages.c.id.in_(ids[start : start + 1000]))
        ):
            if expires_at is not None and expires_at <= at:
                refused[message_id] = EXPIRED
            else:
                mine[message_id] = (enrollment_id, index, step_id)
    refused.update(_spacing_holds(session, rows, mine, at, definitions))
    zones = _run_zones(session, {row.run_id for row in rows})
    by_run: dict[int, list[Any]] = {}
    for row in rows:
        if row.id not in refused:
            by_run.setdefault(row.run_id, []).append(row)
    for run_id, members in by_run.items():
        definition = definitions.get(run_id)
        if definition is None or run_id not in zones:
            continue
        gone = not_standing(
            session, definition, (r.participant_id for r in members), at=at, tz=zones[run_id]
        )
        for row in members:
            if row.participant_id in gone:
                refused[row.id] = NO_LONGER_ELIGIBLE
    return refused


def not_standing_case(
    runs: Mapping[int, tuple[Any, str]], at: datetime | BoundAt
) -> ColumnElement[Any]:
    """SQL for a call list's query: whether the task's member no longer matches its run's
    standing conditions (the same test as :func:`not_standing`), for the runs ``runs`` maps
    to their standing filter (a claim form's, engine/calls/claim_form.py; None: no standing
    conditions) and program time zone; NULL for the tasks of any other run. ``at``: the
    instant, or bound (engine/audience.py BoundAt: a claim builds the statement once)."""
    from engine.audience import audience_condition

    whens: list[tuple[Any, Any]] = []
    for run_id, (filter_, tz) in runs.items():
        if filter_ is not None:
            condition = audience_condition(filter_, at=at, tz=tz)
            whens.append((and_(call_tasks.c.run_id == run_id, not_(condition)), True))
        whens.append((call_tasks.c.run_id == run_id, False))
    if not whens:
        return null()
    return case(*whens, else_=null())


def mark_not_standing(
    session: Connection | Session, candidates: Sequence[Any], at: datetime
) -> None:
    """Call list candidates (engine.calls.tasks.Candidate) of campaign tasks whose member no
    longer matches the run's standing conditions are refused ``no_longer_eligible``: listed
    as not callable, and closed with that reason when an agent's claim meets them. A
    participant whose ``not_standing`` the list's query already read (True/False, at ``at``)
    is not queried again."""
    by_run: dict[int, list[Any]] = {}
    for c in candidates:
        if c.blocked is None and c.form is not None and c.task.kind == "campaign":
            known = getattr(c.participant, "not_standing", None)
            if known is not None:
                if known:
                    c.blocked = NO_LONGER_ELIGIBLE
                continue
            by_run.setdefault(c.task.run_id, []).append(c)
    for members in by_run.values():
        first = members[0]
        gone = not_matching(
            session,
            first.form.standing,
            (c.participant.id for c in members),
            at=at,
            tz=str(first.program.timezone),
        )
        for c in members:
            if c.participant.id in gone:
                c.blocked = NO_LONGER_ELIGIBLE


_EXPIRED_AT = bindparam("expired_at", type_=UTCDateTime())
# Built once (first in every claim, #19): the instant is bound when it runs.
_CLOSE_EXPIRED = (
    update(call_tasks)
    .where(
        call_tasks.c.expires_at <= _EXPIRED_AT,
        call_tasks.c.status.in_(("open", "claimed")),
        # A live claim is the agent's until it lapses: the call may be under way.
        ~and_(call_tasks.c.status == "claimed", call_tasks.c.claimed_until >= _EXPIRED_AT),
    )
    .values(status="closed", close_reason=EXPIRED, claimed_until=None, updated_at=_EXPIRED_AT)
    .execution_options(synchronize_session=False)
)


def close_expired_call_tasks(conn: Connection | Session, at: datetime) -> int:
    """Close every open (or abandoned claimed) call task past its deadline, reason
    ``expired``: it leaves every list and no longer keeps its run open."""
    result: Any = conn.execute(_CLOSE_EXPIRED, {"expired_at": at})
    return int(result.rowcount or 0)


__all__ = [
    "EXPIRED",
    "NO_LONGER_ELIGIBLE",
    "close_expired_call_tasks",
    "describe_deadline",
    "expired",
    "mark_not_standing",
    "message_deadline",
    "not_matching",
    "not_standing",
    "send_time_refusals",
    "standing_reason",
    "start_of_day",
]
