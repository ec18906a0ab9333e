"""Tested fakes and data builders for the engine's own tests and for integrators.

Builders insert through the ORM with sensible defaults so a test states only what matters
to it. They flush but never commit: the caller owns the transaction.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.clock import FrozenClock
from engine.db.models import ActivityEvent, Consent, Participant, Program
from engine.sampling import sample_key

__all__ = ["FrozenClock", "make_consent", "make_event", "make_participant", "make_program"]

_sequence = itertools.count(1)


def make_program(
    session: Session,
    *,
    at: datetime,
    key: str = "loyalty",
    name: str = "Loyalty Rewards",
    timezone: str = "America/New_York",
    region: str = "US",
) -> Program:
    existing = session.scalar(select(Program).where(Program.key == key))
    if existing is not None:
        return existing
    program = Program(key=key, name=name, timezone=timezone, region=region, created_at=at)
    session.add(program)
    session.flush()
    return program


def make_participant(
    session: Session, program: Program, *, at: datetime, **fields: Any
) -> Participant:
    n = next(_sequence)
    values: dict[str, Any] = {
        "external_id": f"P{n:06d}",
        "first_name": "Alex",
        "last_name": f"Member{n}",
        "email": f"member{n}@example.com",
        "phone": f"+1202555{n % 10000:04d}",
        "status": "active",
        "points_balance": 0,
        "points_expiring": 0,
        "attributes": {},
        "created_at": at,
        "updated_at": at,
    }
    values.update(fields)
    program_key = session.scalar(select(Program.key).where(Program.id == program.id)) or ""
    values.setdefault("sample_key", sample_key(program_key, values["external_id"]))
    participant = Participant(program_id=program.id, **values)
    session.add(participant)
    session.flush()
    return participant


def make_event(
    session: Session,
    participant: Participant,
    *,
    type: str,
    occurred_at: datetime,
    points: int | None = None,
    amount: Decimal | None = None,
    reference: str | None = None,
    source: str = "test",
) -> ActivityEvent:
    event = ActivityEvent(
        program_id=participant.program_id,
        participant_id=participant.id,
        type=type,
        occurred_at=occurred_at,
        points=points,
        amount=amount,
        reference=reference or f"test-{next(_sequence)}",
        source=source,
        created_at=occurred_at,
    )
    session.add(event)
    session.flush()
    return event


def make_consent(
    session: Session,
    participant: Participant,
    *,
    channel: str,
    status: str,
    at: datetime,
    source: str = "test",
) -> Consent:
    consent = Consent(
        participant_id=participant.id, channel=channel, status=status, recorded_at=at, source=source
    )
    session.add(consent)
    session.flush()
    return consent
