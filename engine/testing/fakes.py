"""Tested fakes and data builders for the engine's own tests and for integrators.

Builders insert through the ORM with sensible defaults so a test states only what matters
to it. They flush but never commit: the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import yaml
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
from engine.db.models import (
    ActivityEvent,
    CampaignRun,
    Consent,
    Enrollment,
    OutboxMessage,
    Participant,
    Program,
)
from engine.definitions.loader import LoadedDefinition, parse_definition
from engine.sampling import sample_key
from engine.sending.outbox import message_uids

if TYPE_CHECKING:
    from engine.app import App

__all__ = [
    "PROGRAM_SENDER",
    "PROGRAM_SENDER_ENV",
    "FrozenClock",
    "RecordingChannel",
    "make_consent",
    "make_event",
    "make_outbox_message",
    "make_participant",
    "make_program",
    "make_run",
]

_sequence = itertools.count(1)

# The make_program program's own sender identity: a real program's email campaign is launched
# (by hand, the tick or the scheduler) only under its own sender and postal address
# (engine/sender_identity.py). Settings fields; PROGRAM_SENDER_ENV for a subprocess.
PROGRAM_SENDER = {
    "email_from": "Loyalty Rewards <members@loyalty.example>",
    "postal_address": "1 Loyalty Way, Chicago, IL 60601, USA",
}
PROGRAM_SENDER_ENV = {f"CAMPAIGN_{key.upper()}": value for key, value in PROGRAM_SENDER.items()}


@contextmanager
def unit(app: App) -> Iterator[Session]:
    """One committed unit of work."""
    with app.sessions() as session, session.begin():
        yield session


def load_definition(defaults: dict[str, Any], **fields: Any) -> LoadedDefinition:
    """A campaign definition through the real loader: ``defaults`` with ``fields`` over them."""
    data = {**defaults, **fields}
    source = yaml.safe_dump(data, sort_keys=False)
    return parse_definition(source, f"campaigns/{data['name']}.yaml", expected_name=data["name"])


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


# --------------------------------------------------------------------------- runs and outbox

TEST_DEFINITION = """\
name: {name}
program: {program}
audience: {{field: status, eq: active}}
holdout_percent: 0
goal: {{events: [login], window: 30d}}
steps:
  - {{id: email-1, channel: email, template: welcome}}
  - {{id: sms-1, channel: sms, template: reminder}}
"""


def make_run(
    session: Session,
    program: Program,
    *,
    at: datetime,
    campaign: str = "test-campaign",
    definition_source: str | None = None,
    status: str = "active",
) -> CampaignRun:
    """A campaign run with a stored definition (default: one email and one SMS step)."""
    source = definition_source or TEST_DEFINITION.format(name=campaign, program=program.key)
    run = CampaignRun(
        campaign=campaign,
        program_id=program.id,
        definition_hash=hashlib.sha256(source.encode()).hexdigest(),
        definition_source=source,
        fire_key=f"test-{next(_sequence)}",
        status=status,
        launched_at=at,
    )
    session.add(run)
    session.flush()
    return run


def make_outbox_message(
    session: Session,
    run: CampaignRun,
    participant: Participant,
    *,
    at: datetime,
    channel: str = EMAIL,
    step_id: str | None = None,
    content: dict[str, Any] | None = None,
    not_before: datetime | None = None,
    status: str = "queued",
    to_address: str | None = None,
) -> OutboxMessage:
    """A queued outbox message as the sequencer writes it, with its treatment enrollment
    (one per run and participant, created when missing)."""
    enrollment = session.scalar(
        select(Enrollment).where(
            Enrollment.run_id == run.id, Enrollment.participant_id == participant.id
        )
    )
    if enrollment is None:
        enrollment = Enrollment(
            run_id=run.id,
            campaign=run.campaign,
            participant_id=participant.id,
            group="treatment",
            enrolled_at=at,
            state="active",
            next_action_at=None,
            next_step_index=1,
        )
        session.add(enrollment)
        session.flush()
    if content is None:
        if channel == EMAIL:
            content = {
                "subject": f"Hello {participant.first_name}",
                "html": "<p>Your points are waiting.</p>",
                "text": "Your points are waiting.",
                "headers": {
                    "List-Unsubscribe": f"<https://example.com/u/{participant.id}>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                },
            }
        else:
            content = {
                "body": "Your points are waiting. Reply STOP to opt out.",
                "encoding": "GSM-7",
                "segments": 1,
            }
    message = OutboxMessage(
        uid=message_uids(1)[0],
        run_id=run.id,
        enrollment_id=enrollment.id,
        participant_id=participant.id,
        campaign=run.campaign,
        step_id=step_id or f"{channel}-1",
        step_index=0 if channel == EMAIL else 1,
        channel=channel,
        template="welcome" if channel == EMAIL else "reminder",
        locale=participant.locale,
        to_address=to_address or (participant.email if channel == EMAIL else participant.phone),
        content=content,
        status=status,
        not_before=not_before or at,
        attempts=0,
        created_at=at,
        updated_at=at,
    )
    session.add(message)
    session.flush()
    return message
