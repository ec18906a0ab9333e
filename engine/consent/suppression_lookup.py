"""The suppression entries that match a person's addresses: the read side of
engine/consent/suppressions.py, in Core over the ``suppressions`` table, on a Session or a
plain Connection, so `participants show` reads them without the ORM (#18)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from engine.db.reading import Reader
from engine.db.tables.members import suppressions


@dataclass(frozen=True)
class SuppressionView:
    channel: str
    address: str | None
    address_hash: str
    reason: str
    source: str
    note: str | None
    created_at: datetime


def hash_normalised(normalised: str) -> str:
    return hashlib.sha256(normalised.encode()).hexdigest()


def email_hash(stored_email: str) -> str:
    """Hash of an email as stored on a participant (already normalised except for case)."""
    return hash_normalised(stored_email.lower())


def suppressions_for(
    db: Reader, hashes: list[str], *, channels: tuple[str, ...] | None = None
) -> list[SuppressionView]:
    """Entries matching any of ``hashes`` (e.g. a participant's email and phone)."""
    if not hashes:
        return []
    entry = suppressions.c
    query = select(suppressions).where(entry.address_hash.in_(hashes))
    if channels is not None:
        query = query.where(entry.channel.in_(channels))
    return [view_of(row) for row in db.execute(query.order_by(entry.channel))]


def view_of(entry: Any) -> SuppressionView:
    """The view of an entry: a Suppression, or a row of the table."""
    return SuppressionView(
        channel=entry.channel,
        address=entry.address,
        address_hash=entry.address_hash,
        reason=entry.reason,
        source=entry.source,
        note=entry.note,
        created_at=entry.created_at,
    )
