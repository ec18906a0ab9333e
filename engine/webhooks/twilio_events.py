"""Twilio message status callbacks: ``POST /webhooks/twilio/status?m=<our message id>``.

The dispatcher gives every SMS a StatusCallback URL carrying our id, so a callback finds its
message even when the send's answer was lost (a message left ``unknown``); without ``m`` the
MessageSid is tried. Twilio sends no event id: (MessageSid, MessageStatus, ErrorCode) is one,
so a retried callback is recorded once.

    accepted, scheduled, queued, sending, sent -> sent (Twilio has it)
    delivered, read                            -> delivered
    undelivered, failed, canceled              -> failed, the ErrorCode in status_reason
    ErrorCode 21610 (recipient replied STOP)   -> also an SMS suppression 'opt_out'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from engine.consent.opt_outs import suppress
from engine.consent.provider_events import (
    clean_detail,
    clean_text,
    find_by_provider_id,
    find_by_uid,
    record_event,
    report_status,
)
from engine.errors import InputError
from engine.sending import outbox_status

PROVIDER = "twilio"
OPTED_OUT = "21610"  # "Attempt to send to unsubscribed recipient"
_REPORTED = {
    "accepted": outbox_status.SENT,
    "scheduled": outbox_status.SENT,
    "queued": outbox_status.SENT,
    "sending": outbox_status.SENT,
    "sent": outbox_status.SENT,
    "delivered": outbox_status.DELIVERED,
    "read": outbox_status.DELIVERED,
    "undelivered": outbox_status.FAILED,
    "failed": outbox_status.FAILED,
    "canceled": outbox_status.FAILED,
}
_DETAIL_KEYS = ("MessageSid", "MessageStatus", "ErrorCode", "ErrorMessage", "To", "From")


@dataclass(frozen=True)
class StatusOutcome:
    duplicate: bool
    matched: bool
    new_status: str | None
    suppressed: bool


def apply_status_callback(
    session: Session,
    uid: str | None,
    form: Mapping[str, str],
    *,
    at: datetime,
    default_region: str = "US",
) -> StatusOutcome:
    """Apply one (already verified) status callback in the caller's transaction. InputError
    when the callback lacks MessageSid or MessageStatus."""
    sid = (form.get("MessageSid") or form.get("SmsSid") or "").strip()
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
    if not sid or not status:
        raise InputError("a status callback needs MessageSid and MessageStatus")
    code = (form.get("ErrorCode") or "").strip()
    message = find_by_uid(session, uid) if uid else None
    if message is None:
        message = find_by_provider_id(session, sid)
    if message is not None and message.channel != "sms":
        message = None
    inserted = record_event(
        session,
        provider=PROVIDER,
        provider_event_id=f"{sid}:{status}:{code}",
        event=status,
        occurred_at=at,
        received_at=at,
        outbox_id=message.id if message else None,
        participant_id=message.participant_id if message else None,
        detail=clean_detail(form, _DETAIL_KEYS),
    )
    if not inserted:
        return StatusOutcome(
            duplicate=True, matched=message is not None, new_status=None, suppressed=False
        )
    new_status = None
    reported = _REPORTED.get(status)
    if message is not None and reported is not None:
        reason = None
        if reported == outbox_status.FAILED:
            reason = f"twilio {status}" + (f" (error {clean_text(code, 16)})" if code else "")
        new_status = report_status(
            session,
            message,
            reported,
            at=at,
            occurred_at=at,
            reason=reason,
            provider=PROVIDER,
            provider_message_id=sid,
        )
    suppressed = False
    if code == OPTED_OUT:
        to = (message.to_address if message else None) or form.get("To")
        if to:
            try:
                suppress(
                    session,
                    to,
                    "sms",
                    "opt_out",
                    "twilio_21610",
                    at=at,
                    note="Twilio error 21610: the recipient replied STOP",
                    default_region=default_region,
                )
                suppressed = True
            except InputError:
                suppressed = False
    return StatusOutcome(
        duplicate=False, matched=message is not None, new_status=new_status, suppressed=suppressed
    )


__all__ = ["PROVIDER", "StatusOutcome", "apply_status_callback"]
