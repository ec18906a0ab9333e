"""An opt-out, bounce or spam report takes effect at once, whichever path it came by.

The suppression entry itself goes through ``engine.consent.suppressions`` (so
``campaign suppress list`` shows it with its source). The dispatcher re-checks suppression when
it claims a message, so nothing would be sent anyway; here we also settle what is already
waiting, so counts and call lists are right immediately:

- the queued outbox messages of every participant with that address, on the address's message
  channel (email for an email address, SMS for a phone number), become ``skipped`` with
  ``status_reason`` ``suppressed``;
- a phone number suppressed on ``call`` or ``all`` closes those participants' open call tasks.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from engine.consent.suppressions import (
    add_suppression,
    hash_normalised,
    normalise_address,
    remove_suppression,
)
from engine.db.models import CallTask, OutboxMessage, Participant, Suppression
from engine.participants.validation import normalise_email
from engine.sending import outbox_status

SUPPRESSED = "suppressed"  # status_reason / close_reason of what a suppression stopped


@dataclass(frozen=True)
class OptOutResult:
    address: str  # normalised
    channel: str
    reason: str
    # False when the address was already suppressed on this channel or on 'all' before.
    new: bool
    participants: int
    skipped_messages: int
    closed_tasks: int


def existing_reason(session: Session, normalised: str, channels: Sequence[str]) -> str | None:
    """The reason of an entry for this (normalised) address on any of ``channels``."""
    return session.scalar(
        select(Suppression.reason)
        .where(Suppression.address_hash == hash_normalised(normalised))
        .where(Suppression.channel.in_(list(channels)))
        .limit(1)
    )


def participants_with(session: Session, normalised: str, *, given: str | None = None) -> list[int]:
    """Every participant (any program) whose email or phone is this normalised address.
    Emails are stored in their normal form but keep the case of the local part, so the
    spelling the provider ``given`` back (the address we sent to) is tried as well."""
    if "@" in normalised:
        spellings = {normalised}
        if given is not None:
            spellings.add(given.strip())
            with contextlib.suppress(ValueError):
                spellings.add(normalise_email(given.strip()))
        query = select(Participant.id).where(Participant.email.in_(spellings))
    else:
        query = select(Participant.id).where(Participant.phone == normalised)
    return list(session.scalars(query))


def suppress(
    session: Session,
    address: str,
    channel: str,
    reason: str,
    source: str,
    *,
    at: datetime,
    note: str | None = None,
    default_region: str = "US",
) -> OptOutResult:
    """Add the suppression and stop what is waiting for it (see the module docstring).
    Raises InputError for an address that is neither an email nor a phone number."""
    normalised = normalise_address(address, default_region=default_region)
    lock_address(session, normalised)
    before = existing_reason(session, normalised, (channel, "all"))
    add_suppression(
        session, normalised, channel, reason, source, note, at=at, default_region=default_region
    )
    ids = participants_with(session, normalised, given=address)
    skipped = skip_queued(session, ids, normalised, channel, at=at)
    closed = 0
    if "@" not in normalised and channel in ("call", "all"):
        closed = close_call_tasks(session, ids, at=at)
    return OptOutResult(
        address=normalised,
        channel=channel,
        reason=reason,
        new=before is None,
        participants=len(ids),
        skipped_messages=skipped,
        closed_tasks=closed,
    )


def lock_address(session: Session, normalised: str) -> None:
    """PostgreSQL: serialise the writers of one address for the rest of the transaction, so
    "was it suppressed before?" and the write that follows see the same state (ten STOPs at
    once get one confirmation). SQLite: the caller's write lock already serialises."""
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(normalised.encode()).digest()[:8], "big", signed=True)
        session.execute(select(func.pg_advisory_xact_lock(key)))


def skip_queued(
    session: Session, participant_ids: Sequence[int], normalised: str, channel: str, *, at: datetime
) -> int:
    """Mark these participants' queued messages to this address ``skipped`` (``suppressed``).
    Only the address's own message channel, and only messages addressed to it: a participant
    whose address changed since a message was rendered keeps the message to the new one."""
    message_channel = "email" if "@" in normalised else "sms"
    if not participant_ids or channel not in (message_channel, "all"):
        return 0
    assert outbox_status.can_move(outbox_status.QUEUED, outbox_status.SKIPPED)
    rows = session.execute(
        select(OutboxMessage.id, OutboxMessage.to_address)
        .where(OutboxMessage.participant_id.in_(list(participant_ids)))
        .where(OutboxMessage.channel == message_channel)
        .where(OutboxMessage.status == outbox_status.QUEUED)
    ).all()
    ids = [
        row.id
        for row in rows
        if row.to_address is None or _same_address(row.to_address, normalised)
    ]
    if not ids:
        return 0
    result = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids))
        .where(OutboxMessage.status == outbox_status.QUEUED)  # a dispatcher may have claimed it
        .values(status=outbox_status.SKIPPED, status_reason=SUPPRESSED, updated_at=at)
    )
    return cast(CursorResult[Any], result).rowcount


def _same_address(stored: str, normalised: str) -> bool:
    if "@" in normalised:
        return stored.strip().lower() == normalised
    return stored.strip() == normalised


def close_call_tasks(session: Session, participant_ids: Sequence[int], *, at: datetime) -> int:
    """Close the open call tasks of these participants (a task an agent holds is left to the
    agent: the call list re-checks suppression before dialling)."""
    if not participant_ids:
        return 0
    result = session.execute(
        update(CallTask)
        .where(CallTask.participant_id.in_(list(participant_ids)))
        .where(CallTask.status == "open")
        .values(status="closed", close_reason=SUPPRESSED, updated_at=at)
    )
    return cast(CursorResult[Any], result).rowcount


def lift_opt_out(
    session: Session, address: str, channel: str, *, default_region: str = "US"
) -> bool:
    """Remove this address's ``opt_out`` entry on ``channel`` (a resubscribe). Entries with any
    other reason (an erasure, a bounce, a manual block) stay. True when one was removed."""
    normalised = normalise_address(address, default_region=default_region)
    if existing_reason(session, normalised, (channel,)) != "opt_out":
        return False
    remove_suppression(session, normalised, channel, default_region=default_region)
    return True


__all__ = [
    "SUPPRESSED",
    "OptOutResult",
    "close_call_tasks",
    "existing_reason",
    "lift_opt_out",
    "participants_with",
    "skip_queued",
    "suppress",
]
