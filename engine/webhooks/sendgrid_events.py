"""SendGrid Event Webhook batches: what each event does to the outbox and the suppression list.

Events arrive in batches, out of order and sometimes more than once. Each is recorded in
message_events under its ``sg_event_id``; only the first arrival has effects. An event finds its
message by our id in ``custom_args`` (SendGrid copies custom args into every event as top-level
keys: ``message_id``), else by ``sg_message_id``, whose part before the first dot is the
X-Message-Id the send returned (shared by every recipient of one request, so the recipient's
address must match as well).

    processed          -> sent (settles a message left ``unknown`` by a crash)
    delivered          -> delivered
    deferred           -> recorded only (SendGrid keeps trying)
    bounce             -> bounced + email suppression 'bounce';
                          type 'blocked' is temporary: recorded only
    dropped            -> failed (and a suppression when SendGrid says why: the address had
                          unsubscribed, bounced or reported spam before)
    open / click       -> opened_at / clicked_at (and at least delivered)
    unsubscribe        -> email suppression 'opt_out'
    group_unsubscribe  -> the group left, recorded (email_group_unsubscribes), and email
                          suppression 'opt_out' (an address suppressed another way keeps its
                          entry as it is)
    group_resubscribe  -> lifts that suppression when SendGrid's group unsubscribes alone
                          made it and this event is newer (engine/webhooks/sendgrid_groups.py);
                          what it did is recorded in the event's detail
    spamreport         -> email suppression 'spam_report'

Suppressions apply to the address even when the message is not ours to find (an old message,
another sender on the account): the person said so, and the address is what is suppressed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import update
from sqlalchemy.orm import Session

from engine.consent.opt_outs import suppress
from engine.consent.provider_events import (
    MessageRef,
    clean_detail,
    clean_text,
    event_key,
    event_row,
    find_by_provider_ids,
    find_by_uids,
    pick_recipient,
    provider_time,
    record_events,
    report_status,
    stamp_once,
)
from engine.db.models import MessageEvent
from engine.errors import InputError
from engine.sending import outbox_status
from engine.webhooks import rejected, sendgrid_groups

PROVIDER = "sendgrid"
_DETAIL_KEYS = (
    "sg_message_id",
    "type",
    "reason",
    "status",
    "response",
    "attempt",
    "url",
    "bounce_classification",
    "asm_group_id",
    "useragent",
    "ip",
)
# SendGrid's 'dropped' reasons that mean the address is already on one of its lists.
_DROPPED_SUPPRESSIONS = (
    ("unsubscribed address", "opt_out"),
    ("bounced address", "bounce"),
    ("spam reporting address", "spam_report"),
)
_T = TypeVar("_T")


@dataclass(frozen=True)
class SendGridEvent:
    event: str
    event_id: str
    email: str | None
    occurred_at: datetime
    message_uid: str | None
    sg_message_id: str | None
    bounce_type: str | None
    reason: str | None
    detail: dict[str, Any]


@dataclass
class BatchSummary:
    received: int = 0
    applied: int = 0
    duplicates: int = 0
    ignored: int = 0  # not an event object, or no event name
    rejected: int = 0  # could not be stored (kept in rejected_webhook_events with the reason)
    unmatched: int = 0  # applied, but no message of ours was found for it
    status_changes: int = 0
    suppressions: int = 0
    lifted: int = 0  # suppressions a group_resubscribe lifted


def _text(raw: Mapping[str, Any], key: str, limit: int = 320) -> str | None:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        return None
    return clean_text(value.strip(), limit)


def parse_event(raw: object, *, received_at: datetime) -> SendGridEvent | None:
    """One event of a batch, or None when it is not an event at all (pure)."""
    if not isinstance(raw, dict):
        return None
    name = _text(raw, "event", 64)
    if name is None:
        return None
    event_id = _text(raw, "sg_event_id", 10_000)
    if event_id is None:
        # SendGrid always sends one; without it, the event's own content is its identity.
        canonical = json.dumps(raw, sort_keys=True, ensure_ascii=True, default=str)
        event_id = "digest:" + hashlib.sha256(canonical.encode()).hexdigest()
    return SendGridEvent(
        event=name.lower(),
        event_id=event_id,
        email=_text(raw, "email"),
        occurred_at=provider_time(raw.get("timestamp"), default=received_at),
        message_uid=_text(raw, "message_id", 64),
        sg_message_id=_text(raw, "sg_message_id", 256),
        bounce_type=(_text(raw, "type", 32) or "").lower() or None,
        reason=_text(raw, "reason", 1000),
        detail=clean_detail(raw, _DETAIL_KEYS),
    )


def _prefix(event: SendGridEvent) -> str | None:
    return event.sg_message_id.split(".", 1)[0] if event.sg_message_id else None


def apply_events(
    session: Session, events: Sequence[object], *, at: datetime, default_region: str = "US"
) -> BatchSummary:
    """Apply one batch (already verified) in the caller's transaction: every message looked
    up and every event recorded in a few statements, then the effects of the new ones in
    order."""
    summary = BatchSummary(received=len(events))
    unique: list[SendGridEvent] = []
    seen: set[str] = set()
    bad: list[tuple[str, Any]] = []
    for raw in events:
        # Each event on its own: one that cannot be stored is set aside, the rest applied.
        why = rejected.problem(raw)
        if why is not None:
            bad.append((why, raw))
            continue
        event = parse_event(raw, received_at=at)
        if event is None:
            summary.ignored += 1
        elif event_key(event.event_id) in seen:
            summary.duplicates += 1
        else:
            seen.add(event_key(event.event_id))
            unique.append(event)
    summary.rejected = len(bad)
    rejected.record_rejected(session, PROVIDER, bad, at=at)
    by_uid = find_by_uids(session, [e.message_uid for e in unique if e.message_uid])
    by_provider_id = find_by_provider_ids(
        session, [p for e in unique if not by_uid.get(e.message_uid or "") and (p := _prefix(e))]
    )
    matched: list[MessageRef | None] = []
    for event in unique:
        message = by_uid.get(event.message_uid or "")
        if message is None and (prefix := _prefix(event)):
            message = pick_recipient(by_provider_id.get(prefix, []), event.email)
        matched.append(message if message is not None and message.channel == "email" else None)
    new = record_events(
        session,
        [
            event_row(
                provider=PROVIDER,
                provider_event_id=event.event_id,
                event=event.event,
                occurred_at=event.occurred_at,
                received_at=at,
                outbox_id=message.id if message else None,
                participant_id=message.participant_id if message else None,
                detail=event.detail,
            )
            for event, message in zip(unique, matched, strict=True)
        ],
    )
    # A batch often carries several events of one message: its status as we moved it.
    current: dict[int, MessageRef] = {}
    for event, message in zip(unique, matched, strict=True):
        if event_key(event.event_id) not in new:
            summary.duplicates += 1
            continue
        summary.applied += 1
        if message is None:
            summary.unmatched += 1
        else:
            message = current.get(message.id, message)
        moved = _apply(session, event, message, summary, at=at, default_region=default_region)
        if message is not None and moved is not None:
            current[message.id] = replace(message, status=moved)
    return summary


def _apply(
    session: Session,
    event: SendGridEvent,
    message: MessageRef | None,
    summary: BatchSummary,
    *,
    at: datetime,
    default_region: str,
) -> str | None:
    """The effects of one new event; returns the message's new status when it moved."""
    moved: list[str] = []

    def move(reported: str, reason: str | None = None) -> None:
        if message is None:
            return
        new_status = report_status(
            session,
            message,
            reported,
            at=at,
            occurred_at=event.occurred_at,
            reason=reason,
            provider=PROVIDER,
            provider_message_id=_prefix(event),
        )
        if new_status is not None:
            summary.status_changes += 1
            moved.append(new_status)

    def on_email(change: Callable[[str], _T]) -> _T | None:
        """``change`` applied to the event's address; None when there is none to change."""
        address = event.email or (message.to_address if message else None)
        if not address:
            return None
        try:
            return change(address)
        except InputError:
            return None  # not an address we could ever have sent to: nothing to change

    def suppress_email(reason: str) -> None:
        done = on_email(
            lambda address: suppress(
                session,
                address,
                "email",
                reason,
                f"sendgrid_{event.event}",
                at=at,
                note=event.reason,
                default_region=default_region,
            )
        )
        if done is not None:
            summary.suppressions += 1

    kind = event.event
    group = sendgrid_groups.group_id(event.detail.get("asm_group_id"))
    if kind == "processed":
        move(outbox_status.SENT)
    elif kind == "delivered":
        move(outbox_status.DELIVERED)
    elif kind == "bounce":
        if event.bounce_type == "blocked":
            return None  # a temporary block (reputation, content): not the address's fault
        move(outbox_status.BOUNCED, f"bounce: {event.reason or 'no reason given'}")
        suppress_email("bounce")
    elif kind == "dropped":
        move(outbox_status.FAILED, f"dropped: {event.reason or 'no reason given'}")
        why = (event.reason or "").lower()
        for phrase, reason in _DROPPED_SUPPRESSIONS:
            if phrase in why:
                suppress_email(reason)
                break
    elif kind in ("open", "click"):
        if message is not None:
            stamp_once(session, message.id, "opened_at", event.occurred_at)
            if kind == "click":
                stamp_once(session, message.id, "clicked_at", event.occurred_at)
        move(outbox_status.DELIVERED)
    elif kind == "unsubscribe":
        suppress_email("opt_out")
    elif kind == "group_unsubscribe":
        done = on_email(
            lambda address: sendgrid_groups.unsubscribe(
                session, address, group, event.occurred_at, at=at, default_region=default_region
            )
        )
        if done is not None:
            summary.suppressions += 1
    elif kind == "group_resubscribe":
        outcome = on_email(
            lambda address: sendgrid_groups.resubscribe(
                session, address, group, event.occurred_at, default_region=default_region
            )
        )
        if outcome is not None:
            _record_outcome(session, event, outcome.audit())
            if outcome.verdict.outcome == "lifted":
                summary.lifted += 1
    elif kind == "spamreport":
        suppress_email("spam_report")
    # deferred and anything new: recorded, nothing else.
    return moved[-1] if moved else None


def _record_outcome(session: Session, event: SendGridEvent, outcome: dict[str, Any]) -> None:
    """Write what the event did to the suppression list into its own message_events row (as
    ``detail.suppression``): a lifted entry leaves no row of its own, so this is its trail."""
    session.execute(
        update(MessageEvent)
        .where(MessageEvent.provider == PROVIDER)
        .where(MessageEvent.provider_event_id == event_key(event.event_id))
        .values(detail={**event.detail, "suppression": outcome})
    )


__all__ = ["PROVIDER", "BatchSummary", "SendGridEvent", "apply_events", "parse_event"]
