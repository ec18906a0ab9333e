"""What the providers tell us, written down: message_events rows and forward-only outbox moves.

Every webhook (SendGrid events, Twilio status callbacks, inbound SMS) and the suppression sync
write through here, so three rules hold everywhere:

- an event is recorded once: UNIQUE(provider, provider_event_id) with ON CONFLICT DO NOTHING,
  and only the request that inserted the row applies its effects, so a replayed batch or a
  duplicate delivery changes nothing;
- a message's status only moves forward (``engine.sending.outbox_status.forward``), with a
  conditional UPDATE, so a late ``delivered`` never undoes a ``bounced`` and two webhooks
  racing on one message cannot both win;
- everything that came from outside is cleaned before it reaches a column: no NUL characters
  (PostgreSQL refuses them in text and JSON), nothing longer than its column.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Insert, Update, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine.db.bulk import insert_rows
from engine.db.models import MessageEvent, OutboxMessage
from engine.db.types import UTCDateTime
from engine.participants.erasure import scrub_erased
from engine.sending import outbox_status
from engine.sending.contact_ledger import settle_as_contact

EVENT_ID_MAX = 128  # message_events.provider_event_id
EVENT_NAME_MAX = 32  # message_events.event
DETAIL_TEXT_MAX = 1000
_LOOKUP_CHUNK = 500
# Provider timestamps outside this range are nonsense (or an attack on fromtimestamp()).
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
_LATEST = datetime(2100, 1, 1, tzinfo=UTC).timestamp()


def clean_text(value: object, limit: int) -> str:
    """A value from a request as text a column accepts: NULs dropped, at most ``limit``."""
    return str(value).replace("\x00", "")[:limit]


def event_key(raw: str) -> str:
    """A provider event id that fits its column: as is when it does, else a digest of it."""
    cleaned = raw.replace("\x00", "")
    if cleaned == raw and len(raw) <= EVENT_ID_MAX:
        return raw
    return "sha256:" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def clean_detail(values: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The listed keys of a provider payload, as JSON-safe scalars (texts cleaned)."""
    out: dict[str, Any] = {}
    for key in keys:
        value = values.get(key)
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = value
        elif isinstance(value, int):
            out[key] = value if abs(value) < 2**53 else str(value)
        elif isinstance(value, float):
            out[key] = value if math.isfinite(value) else str(value)
        else:
            out[key] = clean_text(value, DETAIL_TEXT_MAX)
    return out


def provider_time(value: object, *, default: datetime) -> datetime:
    """A unix timestamp from a provider payload, or ``default`` when it is missing or absurd."""
    if isinstance(value, bool):
        return default
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return default
    if not isinstance(value, int | float) or not (_EARLIEST <= value <= _LATEST):
        return default
    return datetime.fromtimestamp(value, UTC)


def event_row(
    *,
    provider: str,
    provider_event_id: str,
    event: str,
    occurred_at: datetime,
    received_at: datetime,
    outbox_id: int | None = None,
    participant_id: int | None = None,
    detail: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One message_events row, cleaned (see :func:`record_events`)."""
    return {
        "provider": provider,
        "provider_event_id": event_key(provider_event_id),
        "event": clean_text(event, EVENT_NAME_MAX),
        "occurred_at": occurred_at,
        "received_at": received_at,
        "outbox_id": outbox_id,
        "participant_id": participant_id,
        "detail": dict(detail or {}),
    }


@functools.cache
def _event_insert(dialect: str) -> Insert:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(MessageEvent)
        .on_conflict_do_nothing(index_elements=["provider", "provider_event_id"])
        # RETURNING rather than rowcount: psycopg reports -1 for such an INSERT.
        .returning(MessageEvent.provider_event_id)
    )


def record_events(session: Session, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    """Insert message_events rows (from :func:`event_row`; one provider, no id twice) with ON
    CONFLICT DO NOTHING; returns the provider_event_ids that were new. The others are
    duplicates or replays whose effects were applied before."""
    if not rows:
        return set()
    plain = [dict(row) for row in rows]
    scrub_erased(session, plain)
    statement = _event_insert(session.get_bind().dialect.name)
    # One executemany: SQLAlchemy batches it into multi-row INSERT ... RETURNING statements.
    result = session.connection().execute(statement, plain)
    return set(result.scalars())


def record_new_events(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert message_events rows (from :func:`event_row`) the caller knows are new: it looked
    their ids up under a lock every writer of their provider takes. Written together
    (engine/db/bulk.py: COPY on PostgreSQL), without ON CONFLICT nor RETURNING; should one be
    there after all, the unique key raises IntegrityError and the caller's transaction fails."""
    if not rows:
        return
    plain = [dict(row) for row in rows]
    scrub_erased(session, plain)
    insert_rows(session.connection(), MessageEvent.__table__, plain)


def record_event(session: Session, **fields: Any) -> bool:
    """Insert one message_events row (the arguments of :func:`event_row`); False when it is
    a duplicate or a replay."""
    row = event_row(**fields)
    return bool(record_events(session, [row]))


@dataclass(frozen=True)
class MessageRef:
    """The part of an outbox row an event needs."""

    id: int
    uid: str
    participant_id: int
    channel: str
    status: str
    to_address: str | None
    provider_message_id: str | None


_REF_COLUMNS = (
    OutboxMessage.id,
    OutboxMessage.uid,
    OutboxMessage.participant_id,
    OutboxMessage.channel,
    OutboxMessage.status,
    OutboxMessage.to_address,
    OutboxMessage.provider_message_id,
)


def _usable_id(value: str, limit: int) -> bool:
    return bool(value) and len(value) <= limit and "\x00" not in value


def find_by_uids(session: Session, uids: Iterable[str]) -> dict[str, MessageRef]:
    """Messages by our message id (``outbox_messages.uid``), as carried in custom_args and in
    the status-callback URL; ids that are not ours are simply absent."""
    wanted = sorted({uid for uid in uids if _usable_id(uid, 32)})
    found: dict[str, MessageRef] = {}
    for start in range(0, len(wanted), _LOOKUP_CHUNK):
        chunk = wanted[start : start + _LOOKUP_CHUNK]
        for row in session.execute(select(*_REF_COLUMNS).where(OutboxMessage.uid.in_(chunk))):
            found[row.uid] = MessageRef(*row)
    return found


def find_by_provider_ids(
    session: Session, provider_message_ids: Iterable[str]
) -> dict[str, list[MessageRef]]:
    """Messages by the id the provider gave them (several per id for a SendGrid request)."""
    wanted = sorted({pid for pid in provider_message_ids if _usable_id(pid, 128)})
    found: dict[str, list[MessageRef]] = {}
    for start in range(0, len(wanted), _LOOKUP_CHUNK):
        chunk = wanted[start : start + _LOOKUP_CHUNK]
        query = select(*_REF_COLUMNS).where(OutboxMessage.provider_message_id.in_(chunk))
        for row in session.execute(query):
            found.setdefault(row.provider_message_id, []).append(MessageRef(*row))
    return found


def pick_recipient(candidates: Sequence[MessageRef], to_address: str | None) -> MessageRef | None:
    """The one candidate sent to ``to_address`` (compared without case); None when none or
    several match. Without an address only a lone candidate is taken."""
    if to_address is not None:
        wanted = to_address.strip().lower()
        candidates = [c for c in candidates if (c.to_address or "").lower() == wanted]
    return candidates[0] if len(candidates) == 1 else None


def find_by_uid(session: Session, uid: str) -> MessageRef | None:
    return find_by_uids(session, [uid]).get(uid)


def find_by_provider_id(
    session: Session, provider_message_id: str, *, to_address: str | None = None
) -> MessageRef | None:
    """A message by the id the provider gave it. SendGrid gives one id to a whole request, so
    for email the recipient must match too (``to_address``)."""
    candidates = find_by_provider_ids(session, [provider_message_id]).get(provider_message_id)
    return pick_recipient(candidates or [], to_address)


@functools.cache
def _status_update(options: frozenset[str]) -> Update:
    """The conditional status UPDATE for one combination of optional columns, built once:
    webhooks run it for nearly every event, and building a statement costs more than running
    it."""
    values: dict[str, Any] = {"status": bindparam("v_status"), "updated_at": bindparam("v_at")}
    occurred = bindparam("v_occurred", type_=UTCDateTime())
    if "sent_at" in options:
        values["sent_at"] = func.coalesce(OutboxMessage.sent_at, occurred)
    if "delivered_at" in options:
        values["delivered_at"] = func.coalesce(OutboxMessage.delivered_at, occurred)
    if "reason" in options:
        values["status_reason"] = bindparam("v_reason")
        values["last_error"] = bindparam("v_reason")
    if "provider" in options:
        values["provider"] = bindparam("v_provider")
    if "provider_message_id" in options:
        values["provider_message_id"] = bindparam("v_provider_message_id")
    return (
        update(OutboxMessage)
        .where(OutboxMessage.id == bindparam("v_id"))
        .where(OutboxMessage.status == bindparam("v_current"))
        .values(values)
    )


def report_status(
    session: Session,
    message: MessageRef,
    reported: str,
    *,
    at: datetime,
    occurred_at: datetime,
    reason: str | None = None,
    provider: str | None = None,
    provider_message_id: str | None = None,
) -> str | None:
    """Move ``message`` forward to ``reported`` (sent, delivered, bounced, failed) when the
    state machine allows it; returns the new status, or None when nothing changed.

    A message in ``unknown`` (the crash window) is settled by any such report: the provider
    has it, so it was sent, and it joins the contacts ledger (engine/sending/contact_ledger.py). The
    UPDATE is conditional on the status we read, so a concurrent writer that moved it first
    wins and this report is re-judged against the new status.
    """
    connection = session.connection()
    current = message.status
    for _ in range(3):
        new = outbox_status.forward(current, reported)
        if new is None:
            return None
        params: dict[str, Any] = {
            "v_id": message.id,
            "v_current": current,
            "v_status": new,
            "v_at": at,
            "v_occurred": occurred_at,
        }
        options = set()
        if new in (outbox_status.SENT, outbox_status.DELIVERED, outbox_status.BOUNCED):
            options.add("sent_at")
        if new == outbox_status.DELIVERED:
            options.add("delivered_at")
        if reason is not None and new in (outbox_status.FAILED, outbox_status.BOUNCED):
            options.add("reason")
            params["v_reason"] = clean_text(reason, DETAIL_TEXT_MAX)
        if provider is not None and message.provider_message_id is None:
            options.add("provider")
            params["v_provider"] = provider
            if provider_message_id:
                options.add("provider_message_id")
                params["v_provider_message_id"] = clean_text(provider_message_id, 128)
        if current == outbox_status.UNKNOWN:
            # The provider has it (whatever it reports of it), so it went as far as a message
            # recorded sent: a contact of the ledger, at the instant the caps counted it at
            # while unknown (written before the UPDATE overwrites updated_at). The row is
            # locked first, so the move below cannot then miss.
            locked = session.scalar(
                select(OutboxMessage.status).where(OutboxMessage.id == message.id).with_for_update()
            )
            if locked != current:
                if locked is None:
                    return None
                current = locked
                continue
            settle_as_contact(session, message.id)
        result = connection.execute(_status_update(frozenset(options)), params)
        if result.rowcount == 1:
            return new
        latest = session.scalar(select(OutboxMessage.status).where(OutboxMessage.id == message.id))
        if latest is None:
            return None
        current = latest
    return None


@functools.cache
def _stamp_update(column: str) -> Update:
    target = {
        "sent_at": OutboxMessage.sent_at,
        "delivered_at": OutboxMessage.delivered_at,
        "opened_at": OutboxMessage.opened_at,
        "clicked_at": OutboxMessage.clicked_at,
    }[column]
    when = bindparam("v_when", type_=UTCDateTime())
    return (
        update(OutboxMessage)
        .where(OutboxMessage.id == bindparam("v_id"))
        .where(target.is_(None) | (target > when))
        .values({column: when})
    )


def stamp_once(session: Session, outbox_id: int, column: str, when: datetime) -> None:
    """Set a timestamp column to the earliest instant reported: the first open is the one
    that counts, whatever order the events arrive in."""
    session.connection().execute(_stamp_update(column), {"v_id": outbox_id, "v_when": when})


__all__ = [
    "MessageRef",
    "clean_detail",
    "clean_text",
    "event_key",
    "event_row",
    "find_by_provider_id",
    "find_by_provider_ids",
    "find_by_uid",
    "find_by_uids",
    "pick_recipient",
    "provider_time",
    "record_event",
    "record_events",
    "report_status",
    "stamp_once",
]
