"""The outbox seen from the operator's chair: list messages, list the unknown ones, settle them,
and turn a stored row into the message a channel sends.

Content of a row (written by engine/sequencing/, read here and nowhere else):

- email: ``{"subject", "html", "text", "headers"}`` or, for a SendGrid dynamic template,
  ``{"template_id", "dynamic_template_data", "headers"}``;
- sms: ``{"body", "encoding", "segments"}``.

Statuses move only as engine/sending/outbox_status.py allows; ``resolve`` asks it before writing.
"""

from __future__ import annotations

import email.utils
import functools
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from engine.channels.base import Outbound, OutboundEmail, OutboundSms
from engine.clock import ensure_utc
from engine.db.models import OUTBOX_STATUSES, CampaignRun, OutboxMessage, Participant
from engine.errors import InputError, NotFoundError
from engine.sending import outbox_status as st
from engine.sending.contact_ledger import (
    contacts_of_messages,
    settle_as_contact,
    unknown_counted_at,
)
from engine.settings import Settings

ResolveAction = Literal["sent", "resend", "failed"]
_RESOLVE_TO: dict[str, str] = {"sent": st.SENT, "resend": st.QUEUED, "failed": st.FAILED}
TWILIO_STATUS_PATH = "/webhooks/twilio/status"


def message_uids(count: int) -> list[str]:
    """``count`` new message uids: 32 hex digits, the first 12 the Unix time in milliseconds,
    the other 20 random (80 bits: unguessable, as a uuid4's 122 are).

    Time first, as in a UUIDv7: the uids of a batch land together at the end of the unique
    index instead of on a random page each. With random uids, a million-message step dirtied
    most of that index's pages again on every commit (at 200k rows, 12 µs per message of the
    SQLite write path)."""
    prefix = format(time.time_ns() // 1_000_000, "012x")
    random = os.urandom(10 * count).hex()
    return [prefix + random[i : i + 20] for i in range(0, 20 * count, 20)]


@dataclass(frozen=True)
class OutboxView:
    id: int
    uid: str
    run_id: int
    campaign: str
    step: str
    variant: str | None
    channel: str
    to: str | None
    external_id: str | None
    status: str
    status_reason: str | None
    attempts: int
    not_before: datetime
    claimed_by: str | None
    claimed_until: datetime | None
    provider: str | None
    provider_message_id: str | None
    last_error: str | None
    sent_at: datetime | None
    updated_at: datetime
    # The deadline (engine/sending/deadlines.py): past it the message is skipped as expired.
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Resolution:
    id: int
    uid: str
    before: str
    after: str
    note: str | None


def _views(session: Session, query: Any) -> list[OutboxView]:
    rows = session.execute(
        query.add_columns(Participant.external_id).outerjoin(
            Participant, Participant.id == OutboxMessage.participant_id
        )
    ).all()
    return [
        OutboxView(
            id=m.id,
            uid=m.uid,
            run_id=m.run_id,
            campaign=m.campaign,
            step=m.step_id,
            variant=m.variant,
            channel=m.channel,
            to=m.to_address,
            external_id=external_id,
            status=m.status,
            status_reason=m.status_reason,
            attempts=m.attempts,
            not_before=m.not_before,
            claimed_by=m.claimed_by,
            claimed_until=m.claimed_until,
            provider=m.provider,
            provider_message_id=m.provider_message_id,
            last_error=m.last_error,
            sent_at=m.sent_at,
            updated_at=m.updated_at,
            expires_at=m.expires_at,
        )
        for m, external_id in rows
    ]


def list_messages(
    session: Session,
    *,
    status: str | None = None,
    run_id: int | None = None,
    limit: int = 100,
) -> list[OutboxView]:
    """Messages, most recently changed first, optionally of one status and/or run."""
    query = select(OutboxMessage).order_by(OutboxMessage.updated_at.desc(), OutboxMessage.id.desc())
    if status is not None:
        if status not in OUTBOX_STATUSES:
            raise InputError(f"status {status!r}: use one of {', '.join(OUTBOX_STATUSES)}")
        query = query.where(OutboxMessage.status == status)
    if run_id is not None:
        if session.get(CampaignRun, run_id) is None:
            raise NotFoundError(f"no campaign run {run_id}; see `campaign runs list`")
        query = query.where(OutboxMessage.run_id == run_id)
    return _views(session, query.limit(limit))


def _unknown_filters(run_id: int | None, since: datetime | None) -> list[Any]:
    where: list[Any] = [OutboxMessage.status == st.UNKNOWN]
    if run_id is not None:
        where.append(OutboxMessage.run_id == run_id)
    if since is not None:
        where.append(OutboxMessage.updated_at >= ensure_utc(since))
    return where


def unknown_messages(
    session: Session,
    *,
    limit: int = 1000,
    after: int | None = None,
    run_id: int | None = None,
    since: datetime | None = None,
) -> list[OutboxView]:
    """Messages whose fate is unknown (a crash or timeout after the request went out): each
    may or may not have reached the recipient. Settle them with :func:`resolve` or
    :func:`resolve_many`. In id order, ``limit`` at a time from after id ``after`` (pages)."""
    where = _unknown_filters(run_id, since)
    if after is not None:
        where.append(OutboxMessage.id > after)
    query = select(OutboxMessage).where(*where).order_by(OutboxMessage.id)
    return _views(session, query.limit(limit))


def count_unknown(
    session: Session, *, run_id: int | None = None, since: datetime | None = None
) -> int:
    """How many messages are of unknown fate (with the filters of :func:`unknown_messages`)."""
    query = select(func.count()).select_from(OutboxMessage)
    return int(session.scalar(query.where(*_unknown_filters(run_id, since))) or 0)


def count_due(session: Session, *, at: datetime) -> int:
    """Queued messages of sendable runs that are due at ``at`` (a progress bar's total)."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .join(CampaignRun, CampaignRun.id == OutboxMessage.run_id)
            .where(
                OutboxMessage.status == st.QUEUED,
                OutboxMessage.not_before <= ensure_utc(at),
                CampaignRun.status == "active",
            )
        )
        or 0
    )


def _find(session: Session, ident: str) -> OutboxMessage:
    text = ident.strip()
    query = select(OutboxMessage).with_for_update()
    if text.isdigit():
        query = query.where(OutboxMessage.id == int(text))
    else:
        query = query.where(OutboxMessage.uid == text.lower())
    message = session.scalar(query)
    if message is None:
        raise NotFoundError(
            f"no outbox message {ident!r} (give its id or uid; see `campaign outbox list`)"
        )
    return message


def resolve(
    session: Session, ident: str, action: ResolveAction, *, at: datetime, note: str | None = None
) -> Resolution:
    """Settle a message by hand: ``sent`` (it did go: never resend; it joins the contacts
    ledger), ``resend`` (it did not: queue it again) or ``failed`` (give up). Until then an
    unknown message counts toward the frequency caps (engine/sending/contact_ledger.py). Refuses
    what the state machine refuses, and a message a dispatcher is sending right now (its
    lease has not run out)."""
    at = ensure_utc(at)
    if action not in _RESOLVE_TO:
        raise InputError(f"resolve how? use one of {', '.join(_RESOLVE_TO)}")
    message = _find(session, ident)
    target = _RESOLVE_TO[action]
    before = message.status
    if before == st.SENDING and message.claimed_until is not None and message.claimed_until > at:
        raise InputError(
            f"outbox message {message.id} is being sent by {message.claimed_by} (lease until "
            f"{message.claimed_until.isoformat()}); wait for it, or for the lease to run out"
        )
    if not st.can_move(before, target):
        raise InputError(
            f"outbox message {message.id} is {before}; it cannot be marked {target} "
            f"(only an unknown message is settled this way: see `campaign outbox unknown`)"
        )
    if target == st.SENT:
        # It did go: it becomes a contact of the ledger, at the instant the caps counted it
        # at while its fate was unknown (engine/sending/contact_ledger.py), so it counts once.
        settle_as_contact(session, message.id, status=before)
    message.status = target
    message.claimed_by = None
    message.claimed_until = None
    message.updated_at = at
    message.status_reason = f"resolved by hand: {note}" if note else "resolved by hand"
    if target == st.SENT and message.sent_at is None:
        message.sent_at = at
    if target == st.QUEUED:
        message.not_before = at
    session.flush()
    return Resolution(message.id, message.uid, before, target, note)


@dataclass(frozen=True)
class Requeued:
    count: int
    status: str
    reason: str | None
    run_id: int | None
    since: datetime | None


REQUEUABLE = (st.FAILED,)


def requeue(
    session: Session,
    *,
    at: datetime,
    status: str = st.FAILED,
    reason: str | None = None,
    run_id: int | None = None,
    since: datetime | None = None,
    note: str | None = None,
) -> Requeued:
    """Queue again, in bulk, messages that failed without ever going (``sent_at`` is null: a
    message the provider accepted and later reported failed did go, and stays failed), e.g.
    those an outage failed ``too_many_attempts`` before outages stopped spending attempts.
    Filters: ``reason`` (their status_reason), ``run_id``, ``since`` (failed since then).
    They start again from no attempt and go through the dispatcher's gate as usual (consent,
    suppressions, windows, caps), their run's state included."""
    at = ensure_utc(at)
    if status not in REQUEUABLE:
        raise InputError(
            f"--status {status}: only failed messages are queued again this way (unknown "
            "ones: `campaign outbox resolve --resend`)"
        )
    if run_id is not None and session.get(CampaignRun, run_id) is None:
        raise NotFoundError(f"no campaign run {run_id}; see `campaign runs list`")
    where = [OutboxMessage.status == status, OutboxMessage.sent_at.is_(None)]
    if reason is not None:
        where.append(OutboxMessage.status_reason == reason)
    if run_id is not None:
        where.append(OutboxMessage.run_id == run_id)
    if since is not None:
        where.append(OutboxMessage.updated_at >= ensure_utc(since))
    assert st.can_requeue(status)
    result = session.execute(
        update(OutboxMessage)
        .where(*where)
        .values(
            status=st.QUEUED,
            status_reason=f"requeued by hand: {note}" if note else "requeued by hand",
            attempts=0,
            not_before=at,
            claimed_by=None,
            claimed_until=None,
            updated_at=at,
        )
        .execution_options(synchronize_session=False)
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    return Requeued(count, status, reason, run_id, since)


@dataclass(frozen=True)
class BulkResolution:
    count: int
    after: str
    note: str | None


_BULK_CHUNK = 1000  # ids per statement (SQLite's bound-parameter limit)


def resolve_many(
    session: Session,
    action: ResolveAction,
    *,
    at: datetime,
    run_id: int | None = None,
    since: datetime | None = None,
    note: str | None = None,
) -> BulkResolution:
    """Settle every unknown message (of run ``run_id``, left unknown since ``since``) at once,
    as :func:`resolve` settles one: ``sent`` writes each one's contact at the instant the caps
    counted it at, ``resend`` queues them again, ``failed`` gives up on them."""
    at = ensure_utc(at)
    if action not in _RESOLVE_TO:
        raise InputError(f"resolve how? use one of {', '.join(_RESOLVE_TO)}")
    if run_id is not None and session.get(CampaignRun, run_id) is None:
        raise NotFoundError(f"no campaign run {run_id}; see `campaign runs list`")
    target = _RESOLVE_TO[action]
    assert st.can_move(st.UNKNOWN, target)
    query = select(OutboxMessage.id).where(*_unknown_filters(run_id, since))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list(session.scalars(query.order_by(OutboxMessage.id)))
    values: dict[str, Any] = {
        "status": target,
        "claimed_by": None,
        "claimed_until": None,
        "updated_at": at,
        "status_reason": f"resolved by hand: {note}" if note else "resolved by hand",
    }
    if target == st.SENT:
        values["sent_at"] = func.coalesce(OutboxMessage.sent_at, at)
    if target == st.QUEUED:
        values["not_before"] = at
    for start in range(0, len(ids), _BULK_CHUNK):
        chunk = ids[start : start + _BULK_CHUNK]
        if target == st.SENT:
            # Before the move, which overwrites updated_at (engine/sending/contact_ledger.py).
            session.execute(
                contacts_of_messages(
                    session.get_bind().dialect.name,
                    unknown_counted_at(),
                    OutboxMessage.id.in_(chunk),
                    OutboxMessage.status == st.UNKNOWN,
                )
            )
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(chunk), OutboxMessage.status == st.UNKNOWN)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    return BulkResolution(len(ids), target, note)


# --------------------------------------------------------------------------- outbound


@functools.lru_cache(maxsize=64)
def split_address(value: str) -> tuple[str | None, str]:
    """'Rewards Team <rewards@example.com>' -> ('Rewards Team', 'rewards@example.com')."""
    name, address = email.utils.parseaddr(value)
    if not address or "@" not in address:
        raise InputError(f"CAMPAIGN_EMAIL_FROM {value!r} is not an email address")
    return (name or None), address


def status_callback_url(settings: Settings, uid: str) -> str:
    """Twilio status callbacks carry our message id in ``m`` (engine/webhooks.py reads it)."""
    return f"{settings.public_url.rstrip('/')}{TWILIO_STATUS_PATH}?m={uid}"


def build_outbound(
    *,
    uid: str,
    channel: str,
    to: str,
    content: Mapping[str, Any],
    settings: Settings,
    campaign: str | None = None,
    to_name: str | None = None,
    subject_prefix: str = "",
) -> Outbound:
    """The message a channel sends for one outbox row (or a test send). Raises ValueError
    (from the message classes) when the stored content cannot make a message."""
    if channel == "email":
        from_name, from_email = split_address(settings.email_from)
        headers = {str(k): str(v) for k, v in (content.get("headers") or {}).items()}
        categories = (campaign,) if campaign else ()
        template_id = content.get("template_id")
        if template_id:
            data = dict(content.get("dynamic_template_data") or {})
            if subject_prefix:
                data["subject_prefix"] = subject_prefix
            return OutboundEmail(
                message_id=uid,
                to_email=to,
                to_name=to_name,
                from_email=from_email,
                from_name=from_name,
                headers=headers,
                categories=categories,
                template_id=str(template_id),
                dynamic_template_data=data,
            )
        subject = content.get("subject")
        return OutboundEmail(
            message_id=uid,
            to_email=to,
            to_name=to_name,
            from_email=from_email,
            from_name=from_name,
            subject=f"{subject_prefix}{subject}" if subject else subject,
            html=content.get("html"),
            text=content.get("text"),
            headers=headers,
            categories=categories,
        )
    if channel == "sms":
        body = content.get("body")
        if not body:
            raise ValueError(f"message {uid}: the stored SMS has no body")
        return OutboundSms(
            message_id=uid,
            to=to,
            body=f"{subject_prefix}{body}",
            status_callback=status_callback_url(settings, uid),
        )
    raise ValueError(f"message {uid}: unknown channel {channel!r}")


__all__ = [
    "BulkResolution",
    "OutboxView",
    "Requeued",
    "Resolution",
    "build_outbound",
    "count_due",
    "count_unknown",
    "list_messages",
    "requeue",
    "resolve",
    "resolve_many",
    "split_address",
    "status_callback_url",
    "unknown_messages",
]
