"""Suppression lists: addresses and numbers that must not be contacted, across all programs.

An entry is keyed by ``address_hash`` = SHA-256 hex of the normalised address (email:
email-validator's normal form, lower-cased; phone: E.164), so an ``erasure`` entry can drop
the address itself and still block a re-import of the same person.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from engine.consent.suppression_lookup import (
    SuppressionView,
    email_hash,
    hash_normalised,
    suppressions_for,
    view_of,
)
from engine.db.models import (
    SUPPRESSION_CHANNELS,
    SUPPRESSION_REASONS,
    EmailGroupUnsubscribe,
    Suppression,
)
from engine.errors import InputError, NotFoundError

# The read side lives in engine/consent/suppression_lookup.py; these names stay importable here.
__all__ = [
    "SuppressionView",
    "add_suppression",
    "address_hash",
    "email_hash",
    "hash_normalised",
    "is_suppressed",
    "list_suppressions",
    "normalise_address",
    "remove_suppression",
    "suppressions_for",
]


def normalise_address(address: str, *, default_region: str = "US") -> str:
    """An email (anything with '@') or a phone number in its normal form; InputError if it is
    neither."""
    # Imported here: the validators (email_validator, phonenumbers) cost every command that
    # only reads suppressions (`participants show`, `calls next`) a noticeable start-up.
    from engine.participants.validation import normalise_email, normalise_phone

    value = address.strip()
    if "@" in value:
        try:
            return normalise_email(value).lower()
        except ValueError as exc:
            raise InputError(f"{address!r} is not an email address: {exc}") from None
    try:
        return normalise_phone(value, default_region)
    except ValueError as exc:
        raise InputError(f"{address!r} is not an email address or phone number: {exc}") from None


def address_hash(address: str, *, default_region: str = "US") -> str:
    return hash_normalised(normalise_address(address, default_region=default_region))


def _check_channel(channel: str) -> None:
    if channel not in SUPPRESSION_CHANNELS:
        raise InputError(f"channel {channel!r}: use one of {', '.join(SUPPRESSION_CHANNELS)}")


def add_suppression(
    session: Session,
    address: str,
    channel: str,
    reason: str,
    source: str,
    note: str | None = None,
    *,
    at: datetime,
    default_region: str = "US",
) -> SuppressionView:
    """Add (or update the reason of) a suppression. ``erasure`` keeps only the hash, and
    deletes the SendGrid group unsubscribes recorded for the address."""
    _check_channel(channel)
    if reason not in SUPPRESSION_REASONS:
        raise InputError(f"reason {reason!r}: use one of {', '.join(SUPPRESSION_REASONS)}")
    normalised = normalise_address(address, default_region=default_region)
    is_email = "@" in normalised
    if (channel == "email" and not is_email) or (channel in ("sms", "call") and is_email):
        kind = "an email address" if is_email else "a phone number"
        raise InputError(f"{address!r} is {kind}; it cannot be suppressed on {channel}")
    digest = hash_normalised(normalised)
    # An erased person's address is never written in clear again, on any channel.
    erased = session.scalar(
        select(Suppression.id)
        .where(Suppression.address_hash == digest, Suppression.reason == "erasure")
        .limit(1)
    )
    stored_address = None if reason == "erasure" or erased is not None else normalised
    entry = session.scalar(
        select(Suppression).where(
            Suppression.channel == channel, Suppression.address_hash == digest
        )
    )
    if entry is None:
        entry = Suppression(
            channel=channel,
            address=stored_address,
            address_hash=digest,
            reason=reason,
            source=source[:64],
            note=note,
            created_at=at,
        )
        session.add(entry)
    elif entry.reason != "erasure":
        # A stronger or newer reason replaces the old one; an erasure is never weakened.
        entry.reason, entry.source, entry.note = reason, source[:64], note
        entry.address = stored_address
    if reason == "erasure":
        # The SendGrid groups the address left (and when) are more than the hash an erasure
        # keeps: forgotten with it (engine/webhooks/sendgrid_groups.py records no more).
        session.execute(
            delete(EmailGroupUnsubscribe).where(EmailGroupUnsubscribe.address_hash == digest)
        )
    session.flush()
    return view_of(entry)


def remove_suppression(
    session: Session, address: str, channel: str, *, default_region: str = "US"
) -> SuppressionView:
    """Remove one entry. An ``erasure`` entry is refused: it is the record that a person asked to
    be forgotten, and removing it by accident would let a re-import bring them back."""
    _check_channel(channel)
    digest = address_hash(address, default_region=default_region)
    entry = session.scalar(
        select(Suppression).where(
            Suppression.channel == channel, Suppression.address_hash == digest
        )
    )
    if entry is None:
        raise NotFoundError(f"{address!r} is not suppressed on {channel}")
    if entry.reason == "erasure":
        raise InputError(
            f"{address!r} on {channel} is an erasure suppression; it cannot be removed "
            "(the person asked to be forgotten)"
        )
    view = view_of(entry)
    session.execute(delete(Suppression).where(Suppression.id == entry.id))
    return view


def list_suppressions(
    session: Session, channel: str | None = None, limit: int = 100
) -> list[SuppressionView]:
    query = select(Suppression).order_by(Suppression.created_at.desc(), Suppression.id.desc())
    if channel is not None:
        _check_channel(channel)
        query = query.where(Suppression.channel == channel)
    return [view_of(s) for s in session.scalars(query.limit(limit))]


def is_suppressed(
    session: Session, address: str, channel: str, *, default_region: str = "US"
) -> bool:
    """Suppressed on ``channel`` itself or on ``all``."""
    digest = address_hash(address, default_region=default_region)
    return bool(suppressions_for(session, [digest], channels=(channel, "all")))
