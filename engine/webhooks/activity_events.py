"""Activity events that a program's own systems (loyalty platform, billing) push to
``POST /webhooks/events``: renewals, redemptions, activations, logins, payments...

The body is one event object or a JSON array of them (at most ``MAX_EVENTS``). An event has the
fields of a line of ``campaign events import`` (``external_id``, ``type``, ``occurred_at``,
``points``, ``amount``, ``reference``; keys in any case) plus an optional ``program`` (the
program's key; without it, the only program there is). Each event is validated and written by
the import's own code (``engine.participants.events.store_events``): idempotent on (program,
reference), ``last_activity_at`` forward only. A bad event never spoils the good ones beside it
and is never lost in silence: the receipt lists it by its index in the batch with every reason.
The new events are then matched as conversions of the members' enrollments, in the same
transaction, with the event source ``webhook:events`` (a conversion's source ``webhook``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.conversions import match_conversions
from engine.db.models import Program
from engine.errors import InputError
from engine.participants.events import EventProgram, store_events, validate_event
from engine.participants.store import ImportStore
from engine.participants.validation import text
from engine.webhooks import rejected

MAX_EVENTS = 1000
SOURCE = "webhook:events"  # activity_events.source; conversions read it as 'webhook'


class TooManyEvents(InputError):
    """More events in one request than ``MAX_EVENTS``: answer 413."""


@dataclass(frozen=True)
class RejectedEvent:
    index: int  # position in the batch, from 0 (a single object is index 0)
    reasons: list[str]


@dataclass
class EventsReceipt:
    """What became of a batch: received = accepted + duplicates + len(rejected)."""

    received: int = 0
    accepted: int = 0  # stored now
    duplicates: int = 0  # already stored under their (program, reference): nothing changed
    rejected: list[RejectedEvent] = field(default_factory=list)
    conversions: int = 0  # conversions the accepted events made


def parse_batch(body: bytes) -> list[Any]:
    """The events of a request body: InputError when it is not JSON of the right shape,
    TooManyEvents beyond MAX_EVENTS."""
    try:
        payload = rejected.load_json(body)  # a huge number rejects its own event only
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InputError("the body is not JSON") from None
    if isinstance(payload, dict):
        return [payload]
    if not isinstance(payload, list):
        raise InputError("the body is not an event object or a JSON array of events")
    if len(payload) > MAX_EVENTS:
        raise TooManyEvents(
            f"{len(payload)} events in one request; send at most {MAX_EVENTS} per request"
        )
    return payload


def receive_events(session: Session, events: Sequence[Any], *, at: datetime) -> EventsReceipt:
    """Store a batch in the caller's transaction and match the conversions it makes."""
    receipt = EventsReceipt(received=len(events))
    programs = {
        key: EventProgram(id_, key, timezone)
        for id_, key, timezone in session.execute(select(Program.id, Program.key, Program.timezone))
    }
    rejects: list[RejectedEvent] = []
    by_program: dict[str, list[tuple[int, Mapping[str, Any]]]] = {}
    for index, raw in enumerate(events):
        if not isinstance(raw, dict):
            rejects.append(RejectedEvent(index, ["not a JSON object"]))
            continue
        why = rejected.problem(raw)
        if why is not None:
            rejects.append(RejectedEvent(index, [why]))
            continue
        row = {str(key).lower(): value for key, value in raw.items()}  # as the JSONL reader
        program, problem = _program(row, programs)
        if program is None:
            # Still validated (in UTC: the zone only places times without an offset), so the
            # receipt names every reason at once.
            _, reasons = validate_event(row, timezone="UTC", at=at)
            rejects.append(RejectedEvent(index, [problem, *reasons]))
            continue
        by_program.setdefault(program.key, []).append((index, row))

    participant_ids: set[int] = set()
    if by_program:
        store = ImportStore(session.connection())
        for key, rows in by_program.items():
            stored = store_events(store, rows, program=programs[key], source=SOURCE, at=at)
            receipt.accepted += stored.inserted
            receipt.duplicates += stored.unchanged
            rejects.extend(RejectedEvent(index, reasons) for index, reasons in stored.rejects)
            participant_ids |= stored.participant_ids
        store.drop_staging()  # temp tables would otherwise live on in the pooled connection
    receipt.rejected = sorted(rejects, key=lambda reject: reject.index)
    # Kept with their reasons, not only answered: the sender may not read the receipt.
    rejected.record_rejected(
        session,
        "events",
        [("; ".join(r.reasons), events[r.index]) for r in receipt.rejected],
        at=at,
    )
    # The same matching an import runs after it commits; limited to these members.
    receipt.conversions = match_conversions(session, at=at, participant_ids=participant_ids)
    return receipt


def _program(
    row: Mapping[str, Any], programs: Mapping[str, EventProgram]
) -> tuple[EventProgram | None, str]:
    """The event's program, or None and why not."""
    key = text(row.get("program"))
    if key is None:
        if len(programs) == 1:
            return next(iter(programs.values())), ""
        if not programs:
            return None, "program: there is no program yet"
        return None, "program: required (there is more than one program)"
    program = programs.get(key)
    if program is None:
        return None, f"program: no program {key!r}"
    return program, ""


__all__ = [
    "MAX_EVENTS",
    "SOURCE",
    "EventsReceipt",
    "RejectedEvent",
    "TooManyEvents",
    "parse_batch",
    "receive_events",
]
