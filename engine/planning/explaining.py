"""``explain``: why one member would or would not be enrolled. Every audience node and every
exclusion with the member's actual values, and the verdict in words ("consent not stated" is
never called an opt-out: engine/consent/wording.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, literal, select
from sqlalchemy.orm import Session

from engine import audience as aud
from engine.clock import ensure_utc
from engine.consent.wording import by_program_default, closed_channels, closed_from_facts
from engine.db.models import CampaignRun, Consent, Enrollment, Participant, Suppression
from engine.definitions.durations import format_duration
from engine.definitions.loader import LoadedDefinition
from engine.errors import NotFoundError
from engine.planning.rules import (
    CONSENT_REQUIRED,
    OPEN_RUN_STATUSES,
    GlobalCap,
    Rules,
    all_event_types,
    leaf_values,
    load_events,
    program_of,
)
from engine.sending.contact_ledger import contact_count


@dataclass(frozen=True)
class ExclusionCheck:
    reason: str
    description: str
    excluded: bool
    actual: Any = None


@dataclass(frozen=True)
class Explanation:
    campaign: str
    external_id: str
    at: datetime
    in_audience: bool
    audience: aud.ExplainNode
    exclusions: list[ExclusionCheck]
    group: str | None
    verdict: str


def explain(
    session: Session,
    loaded: LoadedDefinition,
    external_id: str,
    *,
    at: datetime,
    global_cap: GlobalCap | None = None,
) -> Explanation:
    """Why member ``external_id`` would (not) be enrolled at ``at``: every audience node and
    every exclusion with the member's actual values, and the verdict."""
    at = ensure_utc(at)
    definition = loaded.definition
    program = program_of(session, definition)
    participant = session.scalar(
        select(Participant).where(
            Participant.program_id == program.id, Participant.external_id == external_id
        )
    )
    if participant is None:
        raise NotFoundError(f"no participant {external_id!r} in program {program.key!r}")
    rules = Rules(definition, program, at, global_cap or GlobalCap.default())
    values = aud.participant_values(participant)
    events = load_events(session, participant.id, all_event_types(definition), at)
    tree = aud.explain(definition.audience, values, events, at, tz=rules.tz)

    exclusion_rules = rules.exclusions()
    flags = session.execute(
        select(
            case((rules.audience(), 1), else_=0),
            *(case((cond, 1), else_=0) for _, _, cond in exclusion_rules),
            rules.group(),
        ).where(Participant.id == participant.id)
    ).one()
    in_audience = bool(flags[0])
    actuals = _exclusion_actuals(session, rules, participant, events)
    checks = [
        ExclusionCheck(label, description, bool(flags[1 + i]), actuals.get(label))
        for i, (label, description, _) in enumerate(exclusion_rules)
    ]
    group = str(flags[-1])
    first = next((c for c in checks if c.excluded), None)
    if not in_audience:
        verdict = "not in the audience"
        group_out: str | None = None
    elif first is not None and first.reason == "no_consent":
        required = {
            c: needed and c not in rules.consent_defaults for c, needed in CONSENT_REQUIRED.items()
        }
        closed = closed_from_facts(actuals["no_consent"], required)
        verdict = f"excluded: no_consent: {closed_channels(closed)}"
        group_out = None
    elif first is not None:
        verdict = f"excluded: {first.reason} ({first.description})"
        group_out = None
    else:
        verdict = f"would be enrolled in {group}"
        group_out = group
    return Explanation(
        campaign=definition.name,
        external_id=external_id,
        at=at,
        in_audience=in_audience,
        audience=tree,
        exclusions=checks,
        group=group_out,
        verdict=verdict,
    )


def _exclusion_actuals(
    session: Session, rules: Rules, participant: Participant, events: list[aud.Event]
) -> dict[str, Any]:
    definition, at = rules.definition, rules.at
    actuals: dict[str, Any] = {}
    values = aud.participant_values(participant)
    for index, filter_ in enumerate(definition.exclusions):
        tree = aud.explain(filter_, values, events, at, tz=rules.tz)
        actuals[f"exclusions[{index}]"] = leaf_values(tree, {})

    addresses = {
        c: participant.email if c == "email" else participant.phone for c in rules.channels
    }
    present = [a for a in addresses.values() if a is not None]
    suppressions = (
        session.execute(
            select(Suppression.channel, Suppression.address, Suppression.reason).where(
                Suppression.address.in_(present)
            )
        ).all()
        if present
        else []
    )
    consents = dict(
        session.execute(
            select(Consent.channel, Consent.status).where(Consent.participant_id == participant.id)
        ).all()
    )
    channels: dict[str, Any] = {}
    for channel, address in addresses.items():
        hits = [
            f"{c} ({reason})"
            for c, a, reason in suppressions
            if a == address and c in (channel, "all")
        ]
        channels[channel] = {
            "address": address,
            "suppressed": hits,
            "consent": consents.get(channel)
            or (
                by_program_default(rules.consent_defaults[channel])
                if channel in rules.consent_defaults
                else "not stated"
            ),
        }
    actuals["suppressed"] = {c: v["suppressed"] or None for c, v in channels.items()}
    actuals["no_consent"] = channels

    goal = definition.goal
    goal_events = load_events(session, participant.id, goal.events, at)
    recent = [e for e in goal_events if e.occurred_at >= at - goal.window]
    actuals["converted"] = (
        {"last": recent[-1].type, "at": recent[-1].occurred_at} if recent else None
    )
    caps = {}
    for maximum, per in rules.cap_rules():
        count = session.scalar(select(contact_count(literal(participant.id), at - per, at)))
        caps[f"max {maximum} per {format_duration(per)}"] = int(count or 0)
    actuals["frequency_cap"] = caps
    enrollments = session.execute(
        select(Enrollment.run_id, Enrollment.state, Enrollment.enrolled_at, CampaignRun.status)
        .join(CampaignRun, CampaignRun.id == Enrollment.run_id)
        .where(Enrollment.campaign == definition.name, Enrollment.participant_id == participant.id)
        .order_by(Enrollment.enrolled_at)
    ).all()
    actuals["already_enrolled"] = [
        {"run": run_id, "state": state, "run_status": status}
        for run_id, state, _, status in enrollments
        if state == "active" and status in OPEN_RUN_STATUSES
    ] or None
    actuals["reentry"] = {"last_enrolled_at": enrollments[-1][2]} if enrollments else None
    return actuals
