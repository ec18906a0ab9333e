"""Erasure (GDPR Art. 17, CCPA delete): remove every piece of a member's personal data.

What stays is what the law lets a controller keep and the engine needs:

- **hashed suppressions** of the member's email and phone (reason ``erasure``, no address),
  so they are never contacted again and a re-import of the address is refused;
- **a tombstone participant row** with no personal field: its ``external_id`` becomes
  ``erased:<digest>`` and its status ``closed``. Enrollments, messages, conversions, contacts
  and call tasks keep pointing at it, so reports keep their counts;
- **the caller log's record that each call happened** (agent, time, disposition), with the
  personal columns emptied; the chain still verifies (engine/calls/caller_log.py).

Removed or emptied: the participant's fields and attributes; consents; every outbox
message's address and rendered content (queued ones are skipped first: ``erased``); the
detail of every provider event about the member or their messages; open call tasks (closed:
``erased``); active enrollments (exited: ``erased``); the SendGrid group unsubscribes of the
address (with the suppression); plaintext addresses in earlier suppressions.

Later provider events and unsubscribe POSTs about an erased member store nothing in clear
(engine/consent/provider_events.py scrubs them), and a suppression that exists as ``erasure``
is never weakened back to a plaintext one (engine/consent/suppressions.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, null, or_, select, update
from sqlalchemy.orm import Session

from engine.calls import caller_log
from engine.cases.store import erase_case_texts
from engine.clock import ensure_utc
from engine.consent.suppressions import add_suppression, address_hash
from engine.db.models import (
    CallTask,
    Consent,
    Enrollment,
    MessageEvent,
    OutboxMessage,
    Participant,
    RejectedWebhookEvent,
    Suppression,
)
from engine.db.queries import among
from engine.errors import InputError, NotFoundError
from engine.programs import get_program

ERASED_PREFIX = "erased:"
REASON = "erased"


def tombstone_id(program_key: str, external_id: str) -> str:
    digest = hashlib.sha256(f"{program_key}\x00{external_id}".encode()).hexdigest()
    return ERASED_PREFIX + digest[:40]


def is_erased(external_id: str | None) -> bool:
    return bool(external_id) and str(external_id).startswith(ERASED_PREFIX)


@dataclass(frozen=True)
class ErasureReceipt:
    """What was removed, per table: the answer to the person's request."""

    program: str
    external_id: str
    erased_at: datetime
    already_erased: bool
    tombstone: str
    removed: dict[str, int] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)


_PERSONAL_FIELDS = {
    "first_name": None,
    "last_name": None,
    "email": None,
    "phone": None,
    "timezone": None,
    "locale": None,
    "enrolled_at": None,
    "last_activity_at": None,
    "points_balance": 0,
    "points_expiring": 0,
    "points_expire_at": None,
    "tier": None,
    "renewal_date": None,
    "account_manager": None,
    "source_digest": None,
}


def erase_participant(
    session: Session,
    program_key: str | None,
    external_id: str,
    *,
    at: datetime,
    default_region: str = "US",
) -> ErasureReceipt:
    """Erase one member (the caller owns the transaction). Erasing again changes nothing."""
    at = ensure_utc(at)
    program = get_program(session, program_key)
    tombstone = tombstone_id(program.key, external_id)
    member = session.scalar(
        select(Participant).where(
            Participant.program_id == program.id,
            Participant.external_id.in_([external_id, tombstone]),
        )
    )
    if member is None:
        raise NotFoundError(f"no participant {external_id!r} in program {program.key!r}")
    kept = [
        "hashed suppressions of the email and phone (so they are never contacted again)",
        "a tombstone row without personal data, for report counts",
        "the caller log's record that each call happened, without contact details",
    ]
    if member.external_id == tombstone:
        return ErasureReceipt(program.key, external_id, at, True, tombstone, {}, kept)
    removed: dict[str, int] = {}
    pid = member.id

    suppressed = 0
    for address, channels in ((member.email, ("email",)), (member.phone, ("sms", "call"))):
        for channel in channels if address else ():
            add_suppression(
                session,
                address,  # type: ignore[arg-type]
                channel,
                "erasure",
                "erasure request",
                at=at,
                default_region=default_region,
            )
            suppressed += 1
    removed["suppressions added (hash only)"] = suppressed
    hashes = [
        address_hash(address, default_region=default_region)
        for address in (member.email, member.phone)
        if address
    ]
    removed["plaintext addresses in earlier suppressions"] = _count(
        session.execute(
            update(Suppression)
            .where(Suppression.address_hash.in_(hashes), Suppression.address.is_not(None))
            .values(address=None)
            .execution_options(synchronize_session=False)
        )
    )

    message_ids = select(OutboxMessage.id).where(OutboxMessage.participant_id == pid)
    removed["message events emptied"] = _count(
        session.execute(
            update(MessageEvent)
            .where(or_(MessageEvent.participant_id == pid, MessageEvent.outbox_id.in_(message_ids)))
            .values(detail={})
            .execution_options(synchronize_session=False)
        )
    )
    removed["queued messages skipped"] = _count(
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.participant_id == pid, OutboxMessage.status == "queued")
            .values(status="skipped", status_reason=REASON, updated_at=at)
            .execution_options(synchronize_session=False)
        )
    )
    removed["messages emptied (address and content)"] = _count(
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.participant_id == pid)
            .values(to_address=null(), content={})
            .execution_options(synchronize_session=False)
        )
    )
    removed["open call tasks closed"] = _count(
        session.execute(
            update(CallTask)
            .where(CallTask.participant_id == pid, CallTask.status.in_(("open", "claimed")))
            .values(
                status="closed",
                close_reason=REASON,
                claimed_by=None,
                claimed_until=None,
                updated_at=at,
            )
            .execution_options(synchronize_session=False)
        )
    )
    removed["active enrollments exited"] = _count(
        session.execute(
            update(Enrollment)
            .where(Enrollment.participant_id == pid, Enrollment.state == "active")
            .values(state="exited", exit_reason=REASON, next_action_at=None)
            .execution_options(synchronize_session=False)
        )
    )
    removed["caller log entries emptied"] = caller_log.erase_personal(session, pid, at=at)
    removed["case texts emptied"] = erase_case_texts(session, pid)
    removed["consents"] = _count(
        session.execute(delete(Consent).where(Consent.participant_id == pid))
    )
    # Rejected webhook events are kept as raw JSON text (non-ASCII escaped): those naming the
    # member's address or external id go.
    needles = [v for v in (member.email, member.phone, member.external_id) if v]
    removed["rejected webhook events"] = _count(
        session.execute(
            delete(RejectedWebhookEvent)
            .where(
                or_(*(RejectedWebhookEvent.payload.contains(v, autoescape=True) for v in needles))
            )
            .execution_options(synchronize_session=False)
        )
    )
    member.external_id = tombstone
    for name, value in _PERSONAL_FIELDS.items():
        setattr(member, name, value)
    member.attributes = {}
    member.status = "closed"
    member.updated_at = at
    removed["participant fields"] = len(_PERSONAL_FIELDS) + 1  # and the attributes
    session.flush()
    return ErasureReceipt(program.key, external_id, at, False, tombstone, removed, kept)


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


# Detail keys of provider payloads that carry an address (SendGrid ``email``, Twilio From/To).
_ADDRESS_KEYS = ("email", "From", "To", "from", "to")


def scrub_erased(session: Session, rows: list[dict[str, Any]]) -> None:
    """Empty the detail of provider events about an erased member (by participant, or by an
    address under an erasure suppression), so a late event stores nothing in clear."""
    ids = {row["participant_id"] for row in rows if row.get("participant_id") is not None}
    erased_ids = (
        set(
            session.scalars(
                select(Participant.id).where(
                    among(session, Participant.id, sorted(ids)),
                    Participant.external_id.startswith(ERASED_PREFIX),
                )
            )
        )
        if ids
        else set()
    )
    digests: dict[str, str] = {}
    for row in rows:
        for key in _ADDRESS_KEYS:
            value = (row.get("detail") or {}).get(key)
            if isinstance(value, str) and value:
                try:
                    digests[value] = address_hash(value)
                except InputError:
                    continue
    erased_hashes = (
        set(
            session.scalars(
                select(Suppression.address_hash).where(
                    Suppression.address_hash.in_(set(digests.values())),
                    Suppression.reason == "erasure",
                )
            )
        )
        if digests
        else set()
    )
    for row in rows:
        detail = row.get("detail") or {}
        addresses = [detail[key] for key in _ADDRESS_KEYS if isinstance(detail.get(key), str)]
        if row.get("participant_id") in erased_ids or any(
            digests.get(address) in erased_hashes for address in addresses
        ):
            row["detail"] = {}
