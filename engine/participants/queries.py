"""Read side for coordinators and agents: lists of participants (one participant's account view
is engine/participants/account.py, re-exported here)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from engine.db.models import Participant
from engine.errors import InputError
from engine.locales import display_name
from engine.participants.account import show_participant as show_participant
from engine.programs import get_program

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
