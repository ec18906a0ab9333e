"""``plan``: a dry run of a launch. Counts the audience, the exclusions by reason, the
treatment and holdout groups, each step's reachable members and deadlines, and a sample, from
the same SQL as the launch (engine/planning/rules.py). Writes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from engine import audience as aud
from engine.clock import ensure_utc
from engine.db.models import Participant
from engine.definitions.loader import LoadedDefinition
from engine.definitions.schema import CampaignDefinition
from engine.errors import InputError
from engine.planning.rules import (
    ONE_OFF_KEY,
    GlobalCap,
    Rules,
    all_event_types,
    existing_run,
    fire_key,
    leaf_values,
    load_events,
    program_of,
    tune,
    usable_sql,
)
from engine.preview import StepSmsSize, sms_step_sizes
from engine.sending.deadlines import describe_deadline
from engine.settings import Settings


@dataclass(frozen=True)
class ExclusionCount:
    reason: str
    description: str
    count: int


@dataclass(frozen=True)
class StepVolume:
    """How many treatment members the step's channel can reach today (an upper bound: step
    conditions and later conversions only lower it)."""

    step_id: str
    channel: str
    projected: int
    # The step's deadline in words, and how many treatment members would already be past it
    # when the step falls due (a member date of expires_before before that day): skipped.
    deadline: str = "none"
    expired: int = 0


@dataclass(frozen=True)
class SampleMember:
    external_id: str
    group: str
    values: dict[str, Any]


@dataclass(frozen=True)
class PlanReport:
    campaign: str
    program: str
    at: datetime
    definition_hash: str
    fire_key: str | None
    existing_run_id: int | None
    audience: int
    exclusions: list[ExclusionCount]
    eligible: int
    treatment: int
    holdout: int
    holdout_percent: Decimal
    reachable: dict[str, int]
    steps: list[StepVolume]
    sample: list[SampleMember]
    note: str | None = None
    # Each SMS step rendered for the first sample member (treatment first): segments (#4).
    sms: list[StepSmsSize] = field(default_factory=list)


def resolve_at(
    session: Session, loaded: LoadedDefinition, value: str | None, *, now: datetime
) -> datetime:
    """``--at``: ISO 8601; a naive value is in the program's time zone; None is ``now``."""
    if value is None:
        return ensure_utc(now)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise InputError(
            f"--at {value!r} is not an ISO 8601 date-time; use e.g. 2026-03-02T09:00 or "
            "2026-03-02T09:00:00-05:00"
        ) from exc
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        program = program_of(session, loaded.definition)
        parsed = parsed.replace(tzinfo=ZoneInfo(program.timezone))
    return parsed.astimezone(UTC)


def plan(
    session: Session,
    loaded: LoadedDefinition,
    *,
    at: datetime,
    sample_size: int = 10,
    global_cap: GlobalCap | None = None,
    settings: Settings | None = None,
) -> PlanReport:
    """Who this campaign would reach at ``at``, who is excluded and why. Writes nothing.
    With ``settings`` (the templates), each SMS step's segments for a sample member too."""
    at = ensure_utc(at)
    definition = loaded.definition
    program = program_of(session, definition)
    rules = Rules(definition, program, at, global_cap or GlobalCap.default())
    key, not_now = fire_key(definition, at)
    existing = existing_run(session, definition.name, key)
    tune(session)

    usable = {c: usable_sql(c, by_default=c in rules.consent_defaults) for c in rules.channels}
    inner = rules.from_audience(
        select(
            rules.reason().label("reason"),
            *(case((cond, 1), else_=0).label(f"usable_{c}") for c, cond in usable.items()),
        )
    ).subquery()
    rows = session.execute(
        select(
            inner.c.reason,
            func.count(),
            *(func.sum(inner.c[f"usable_{c}"]) for c in rules.channels),
        ).group_by(inner.c.reason)
    ).all()
    counts: dict[str, int] = {}
    reachable = dict.fromkeys(rules.channels, 0)
    for row in rows:
        counts[row[0]] = int(row[1])
        if row[0] == "treatment":
            for index, channel in enumerate(rules.channels):
                reachable[channel] = int(row[2 + index] or 0)
    exclusions = [
        ExclusionCount(label, description, counts.get(label, 0))
        for label, description, _ in rules.exclusions()
    ]
    treatment, holdout = counts.get("treatment", 0), counts.get("holdout", 0)
    expired = _expired_at_due(session, rules, definition, at, program.timezone)
    steps = [
        StepVolume(
            s.id, s.channel, reachable[s.channel], describe_deadline(s), expired.get(s.id, 0)
        )
        for s in definition.steps
    ]

    sample = _sample(session, rules, sample_size) if sample_size > 0 else []
    note = None
    if existing is not None:
        which = "" if existing.fire_key == ONE_OFF_KEY else f" for {existing.fire_key}"
        note = (
            f"already launched{which} as run {existing.id} "
            f"(status {existing.status}); launching again enrolls nobody"
        )
    elif not_now is not None:
        note = f"cannot launch now: {not_now}"
    sms: list[StepSmsSize] = []
    if settings is not None and sample:
        member = next((m for m in sample if m.group == "treatment"), sample[0])
        sms = sms_step_sizes(session, loaded, member.external_id, settings=settings)
    return PlanReport(
        campaign=definition.name,
        program=program.key,
        at=at,
        definition_hash=loaded.content_hash,
        fire_key=key,
        existing_run_id=existing.id if existing is not None else None,
        audience=sum(counts.values()),
        exclusions=exclusions,
        eligible=treatment + holdout,
        treatment=treatment,
        holdout=holdout,
        holdout_percent=definition.holdout_percent,
        reachable=reachable,
        steps=steps,
        sample=sample,
        note=note,
        sms=sms,
    )


def _expired_at_due(
    session: Session, rules: Rules, definition: CampaignDefinition, at: datetime, tz: str
) -> dict[str, int]:
    """step id -> treatment members whose ``expires_before`` date is on or before the local
    date (program zone) the step falls due if launched at ``at`` (delays only)."""
    result: dict[str, int] = {}
    due = at
    for step in definition.steps:
        due += step.delay
        if step.expires_before is None:
            continue
        day = due.astimezone(ZoneInfo(tz)).date()
        column = Participant.__table__.c[step.expires_before]
        inner = rules.from_audience(
            select(rules.reason().label("reason"), column.label("deadline"))
        ).subquery()
        result[step.id] = int(
            session.scalar(
                select(func.count())
                .select_from(inner)
                .where(inner.c.reason == "treatment", inner.c.deadline <= day)
            )
            or 0
        )
    return result


def _sample(session: Session, rules: Rules, size: int) -> list[SampleMember]:
    # Id order lets the database stop after `size` eligible members instead of sorting all.
    rows = session.execute(
        rules.from_audience(select(Participant, rules.group().label("group")))
        .where(rules.not_excluded())
        .order_by(Participant.id)
        .limit(size)
    ).all()
    types = all_event_types(rules.definition)
    members = []
    for participant, group in rows:
        values = aud.participant_values(participant)
        events = load_events(session, participant.id, types, rules.at)
        tree = aud.explain(rules.definition.audience, values, events, rules.at, tz=rules.tz)
        members.append(SampleMember(participant.external_id, group, leaf_values(tree, {})))
    return members
