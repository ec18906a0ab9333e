"""Read side for coordinators and agents: one participant's full account view, and lists."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from engine.consent.suppressions import email_hash, hash_normalised, suppressions_for
from engine.db.models import ActivityEvent, Consent, Participant, Program
from engine.errors import InputError, NotFoundError
from engine.locales import display_name
from engine.programs import get_program

RECENT_EVENTS = 20
_FIELDS = (
    "external_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "timezone",
    "locale",
    "status",
    "tier",
    "points_balance",
    "points_expiring",
    "points_expire_at",
    "renewal_date",
    "enrolled_at",
    "last_activity_at",
    "account_manager",
    "attributes",
    "created_at",
    "updated_at",
)
LIST_FIELDS = (
    "external_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "status",
    "tier",
    "locale",
    "points_balance",
    "last_activity_at",
)
# What `participants list` shows: the name as the member's customs write it, not its parts.
LIST_COLUMNS = ("external_id", "name", *(f for f in LIST_FIELDS[3:]))


def show_participant(session: Session, program_key: str | None, external_id: str) -> dict[str, Any]:
    """Everything about one participant: fields, consents, suppressions that match their email
    or phone (on any program), and their last 20 activity events, newest first."""
    query = select(Participant, Program.key).join(Program, Program.id == Participant.program_id)
    query = query.where(Participant.external_id == external_id)
    if program_key is not None:
        program = get_program(session, program_key)
        query = query.where(Participant.program_id == program.id)
    found = session.execute(query.limit(2)).all()
    if not found:
        where = f" in program {program_key!r}" if program_key else ""
        raise NotFoundError(f"no participant with external_id {external_id!r}{where}")
    if len(found) > 1:
        raise InputError(
            f"external_id {external_id!r} exists in more than one program; name one with --program"
        )
    participant, key = found[0]
    view: dict[str, Any] = {"program": key}
    view.update({name: getattr(participant, name) for name in _FIELDS})
    view["name"] = display_name(participant.first_name, participant.last_name, participant.locale)
    consents = session.scalars(
        select(Consent).where(Consent.participant_id == participant.id).order_by(Consent.channel)
    )
    view["consents"] = [
        {"channel": c.channel, "status": c.status, "recorded_at": c.recorded_at, "source": c.source}
        for c in consents
    ]
    hashes = []
    if participant.email:
        hashes.append(email_hash(participant.email))
    if participant.phone:
        hashes.append(hash_normalised(participant.phone))
    view["suppressions"] = [
        {
            "channel": s.channel,
            "address": s.address,
            "reason": s.reason,
            "source": s.source,
            "note": s.note,
            "created_at": s.created_at,
        }
        for s in suppressions_for(session, hashes)
    ]
    events = session.scalars(
        select(ActivityEvent)
        .where(ActivityEvent.participant_id == participant.id)
        .order_by(ActivityEvent.occurred_at.desc(), ActivityEvent.id.desc())
        .limit(RECENT_EVENTS)
    )
    view["recent_events"] = [
        {
            "type": e.type,
            "occurred_at": e.occurred_at,
            "points": e.points,
            "amount": e.amount,
            "reference": e.reference,
        }
        for e in events
    ]
    return view


def list_participants(
    session: Session,
    program_key: str | None,
    *,
    status: str | None = None,
    tier: str | None = None,
    locale: str | None = None,
    search: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Participants of a program ordered by external_id. ``search`` matches a part of the
    external id, name or email (case-insensitive), or a phone number's digits."""
    if limit < 1 or offset < 0:
        raise InputError("limit must be >= 1 and offset >= 0")
    program = get_program(session, program_key)
    query = select(*(getattr(Participant, name) for name in LIST_FIELDS)).where(
        Participant.program_id == program.id
    )
    if status is not None:
        query = query.where(Participant.status == status.lower())
    if tier is not None:
        query = query.where(Participant.tier == tier)
    if locale is not None:
        # "zh" lists zh, zh-Hans, zh-TW...; "es-MX" only es-MX.
        query = query.where(
            or_(Participant.locale == locale, Participant.locale.like(f"{_escape(locale)}-%", "\\"))
        )
    if search:
        pattern = f"%{_escape(search.lower())}%"
        columns = (
            Participant.external_id,
            Participant.first_name,
            Participant.last_name,
            Participant.email,
        )
        conditions = [func.lower(c).like(pattern, "\\") for c in columns]
        digits = "".join(ch for ch in search if ch.isdigit())
        if len(digits) >= 4:
            conditions.append(Participant.phone.like(f"%{digits}%"))
        query = query.where(or_(*conditions))
    rows = session.execute(query.order_by(Participant.external_id).limit(limit).offset(offset))
    found = []
    for row in rows:
        values = dict(zip(LIST_FIELDS, row, strict=True))
        values["name"] = display_name(values["first_name"], values["last_name"], values["locale"])
        found.append(values)
    return found


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
