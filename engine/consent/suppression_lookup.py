"""The suppression entries that match a person's addresses: the read side of
engine/consent/suppressions.py, in Core over the ``suppressions`` table, on a Session or a
plain Connection, so `participants show` reads them without the ORM (#18)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Select, String, select

from engine.db.queries import any_of_bound
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


@cache
def suppressed_hashes_query(postgres: bool, *, with_channel: bool = False) -> Select[Any]:
    """The entries whose address hash is one of the list bound as ``hashes`` on one of the
    channels bound as ``channels`` (name ``all`` too): their hash, and with ``with_channel``
    their channel. Built once per database and process and run with its lists, by the
    sender's re-check between requests (engine/sending/gate.py) and the call claim's exact
    check (engine/calls/tasks.py): built with its values each time, its couple of hundred
    literal hashes were coerced and its cache key rebuilt on every run. The channels are
    named so that the (channel, address_hash) key serves it (#20)."""
    entry = suppressions.c
    columns = (entry.address_hash, entry.channel) if with_channel else (entry.address_hash,)
    return select(*columns).where(
        any_of_bound(entry.address_hash, "hashes", postgres, String()),
        any_of_bound(entry.channel, "channels", postgres, String()),
    )


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
