"""Tested fakes and data builders for the engine's own tests and for integrators.

Builders insert through the ORM with sensible defaults so a test states only what matters
to it. They flush but never commit: the caller owns the transaction.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.channels.base import (
    EMAIL,
    ChannelError,
    Outbound,
    OutboundEmail,
    OutboundSms,
    SendResult,
    wrong_kind,
)
from engine.clock import Clock, FrozenClock, SystemClock
from engine.db.models import ActivityEvent, Consent, Participant, Program
from engine.sampling import sample_key

__all__ = [
    "FrozenClock",
    "RecordingChannel",
    "make_consent",
    "make_event",
    "make_participant",
    "make_program",
]

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


class RecordingChannel:
    """A Channel that records what it was asked to send and fails when told to, so dispatch
    tests can assert on what "the provider" received without any network.

    ``attempts`` holds every message passed to ``send``; ``sent`` only those accepted.
    ``fail_next(*errors)`` makes the next sends raise those errors in order;
    ``fail_for(message_id, error)`` makes every send of that message raise ``error``.
    Safe to share between dispatcher threads."""

    def __init__(
        self, kind: str = EMAIL, *, name: str = "recording", clock: Clock | None = None
    ) -> None:
        self.name = name
        self.kind = kind
        self.clock = clock or SystemClock()
        self.attempts: list[Outbound] = []
        self.sent: list[Outbound] = []
        self.results: list[SendResult] = []
        self.closed = False
        self._next_failures: deque[ChannelError] = deque()
        self._failures_for: dict[str, ChannelError] = {}
        self._lock = threading.Lock()

    def fail_next(self, *errors: ChannelError) -> None:
        with self._lock:
            self._next_failures.extend(errors)

    def fail_for(self, message_id: str, error: ChannelError) -> None:
        with self._lock:
            self._failures_for[message_id] = error

    def send(self, message: Outbound) -> SendResult:
        expected = OutboundEmail if self.kind == EMAIL else OutboundSms
        if not isinstance(message, expected):
            raise wrong_kind(self.name, self.kind, message)
        with self._lock:
            if self.closed:
                raise ChannelError(f"channel {self.name} is closed")
            self.attempts.append(message)
            error = self._failures_for.get(message.message_id)
            if error is None and self._next_failures:
                error = self._next_failures.popleft()
            if error is not None:
                raise error
            self.sent.append(message)
            result = SendResult(
                provider_message_id=f"{self.name}-{len(self.sent)}",
                accepted_at=self.clock.now(),
                raw_status=202,
            )
            self.results.append(result)
            return result

    @property
    def sent_ids(self) -> list[str]:
        with self._lock:
            return [message.message_id for message in self.sent]

    def close(self) -> None:
        self.closed = True
