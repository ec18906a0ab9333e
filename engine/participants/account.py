"""One participant's full account view (`participants show`): fields, consents, matching
suppressions and recent activity.

Core over engine/db/tables, on a Session or a plain Connection: the command reads without
importing sqlalchemy.orm or the models (#18).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from engine.consent.suppression_lookup import email_hash, hash_normalised, suppressions_for
from engine.db.reading import Reader
from engine.db.tables.members import activity_events, participant_consents, participants, programs
from engine.errors import InputError, NotFoundError
from engine.locales import display_name

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


def show_participant(db: Reader, program_key: str | None, external_id: str) -> dict[str, Any]:
    """Everything about one participant: fields, consents, suppressions that match their email
    or phone (on any program), and their last 20 activity events, newest first."""
    member = participants.c
    query = select(participants, programs.c.key.label("program_key")).join(
        programs, programs.c.id == member.program_id
    )
    query = query.where(member.external_id == external_id)
    if program_key is not None:
        query = query.where(member.program_id == _program_id(db, program_key))
    found = db.execute(query.limit(2)).all()
    if not found:
        where = f" in program {program_key!r}" if program_key else ""
        raise NotFoundError(f"no participant with external_id {external_id!r}{where}")
    if len(found) > 1:
        raise InputError(
            f"external_id {external_id!r} exists in more than one program; name one with --program"
        )
    participant = found[0]
    view: dict[str, Any] = {"program": participant.program_key}
    view.update({name: getattr(participant, name) for name in _FIELDS})
    view["name"] = display_name(participant.first_name, participant.last_name, participant.locale)
    consent = participant_consents.c
    consents = db.execute(
        select(consent.channel, consent.status, consent.recorded_at, consent.source)
        .where(consent.participant_id == participant.id)
        .order_by(consent.channel)
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
        for s in suppressions_for(db, hashes)
    ]
    event = activity_events.c
    events = db.execute(
        select(event.type, event.occurred_at, event.points, event.amount, event.reference)
        .where(event.participant_id == participant.id)
        .order_by(event.occurred_at.desc(), event.id.desc())
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


def _program_id(db: Reader, key: str) -> int:
    """The id of program ``key``, refused as engine.programs.get_program refuses it."""
    program_id = db.scalar(select(programs.c.id).where(programs.c.key == key))
    if program_id is None:
        raise NotFoundError(
            f"no program {key!r}; create it with `campaign programs add {key} --name ...`"
        )
    return int(program_id)
