"""The contacts ledger as the frequency caps count it: every read of it, in one place.

A cap counts a participant's contacts in a rolling window. They are:

- the rows of ``contacts`` (written when a message is recorded ``sent``, or a call logged);
- their outbox messages in ``unknown``: the dispatcher lost track of them after the request
  may have gone (a crash, a timeout after sending), so they may have reached the person and
  count until someone settles them (engine/sending/outbox.py ``resolve``, or a provider event).

An unknown message counts at :func:`unknown_counted_at`. When it is settled as gone
(``resolve --sent``, a provider's ``processed``/``delivered``...) :func:`settle_as_contact`
turns it into a ``contacts`` row at that same instant, so it is counted once throughout;
settled as not gone (``--failed``) or queued again (``--resend``, to be recorded when it is
sent) it stops counting. A message's row names it (``contacts.message_id``, unique), so
a second writer of it (a dispatcher that outlived its lease recording ``sent`` after a
provider event settled the message) writes nothing.

The caps themselves are pure (engine/policy/caps.py): they take the instants read here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Insert,
    func,
    literal,
    select,
    union_all,
)

from engine.db.tables.outbox import outbox_messages
from engine.db.tables.runs import contacts
from engine.sending import outbox_status as st

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql import Insert as PostgresqlInsert
    from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
    from sqlalchemy.orm import Session

ParticipantFilter = Callable[[Any], ColumnElement[bool]]


def unknown_counted_at() -> ColumnElement[datetime]:
    """When an ``unknown`` message counts as a contact: as near as the row tells to when it
    went ``sending``, never before it.

    A lease that ran out (the dispatcher died mid-batch) leaves ``claimed_until`` (claim time
    + ``dispatch_lease``) and the later instant a dispatcher noticed in ``updated_at`` (that
    may be the next day's run): the end of the lease is the nearer. An outcome the dispatcher
    recorded (a timeout after the request went) clears ``claimed_until`` and writes
    ``updated_at`` right after the attempt, the instant a ``sent`` message's contact gets.
    (``not_before`` is no use: a message may wait in the queue long after it.)"""
    return func.coalesce(outbox_messages.c.claimed_until, outbox_messages.c.updated_at)


def _is_unknown() -> ColumnElement[bool]:
    """``status = 'unknown'`` with the value written into the SQL: that is what lets SQLite
    use the partial index of unknown messages (migration 0009), which a bound parameter
    would not (PostgreSQL uses it either way)."""
    return outbox_messages.c.status == literal(st.UNKNOWN, literal_execute=True)


def contact_times(
    participants: ParticipantFilter,
    since: datetime | ColumnElement[datetime],
    until: datetime | None = None,
) -> CompoundSelect:
    """``(participant_id, instant)`` of every contact in ``(since, until]`` (no upper bound
    without ``until``) of the participants ``participants(column)`` selects: the ``contacts``
    rows and the unknown messages. ``since`` may be a bound parameter (a statement built
    once, engine/calls/rules.py).

    One statement, so that a message settled meanwhile (unknown -> sent and a contacts row,
    in one transaction) is seen once, as either, never as neither (PostgreSQL's READ
    COMMITTED takes a snapshot per statement)."""
    counted_at = unknown_counted_at()
    ledger = select(contacts.c.participant_id, contacts.c.occurred_at).where(
        participants(contacts.c.participant_id), contacts.c.occurred_at > since
    )
    unknown = select(outbox_messages.c.participant_id, counted_at).where(
        _is_unknown(),
        participants(outbox_messages.c.participant_id),
        counted_at > since,
    )
    if until is not None:
        ledger = ledger.where(contacts.c.occurred_at <= until)
        unknown = unknown.where(counted_at <= until)
    return union_all(ledger, unknown)


def contact_count(participant_id: Any, since: datetime, until: datetime) -> ColumnElement[int]:
    """How many contacts the participant ``participant_id`` (a column, for a correlated
    count per member, or a literal) has in ``(since, until]``: ledger rows plus unknown
    messages, in one expression of the caller's statement."""
    counted_at = unknown_counted_at()
    ledger = (
        select(func.count())
        .select_from(contacts)
        .where(
            contacts.c.participant_id == participant_id,
            contacts.c.occurred_at > since,
            contacts.c.occurred_at <= until,
        )
        .scalar_subquery()
    )
    unknown = (
        select(func.count())
        .select_from(outbox_messages)
        .where(
            outbox_messages.c.participant_id == participant_id,
            _is_unknown(),
            counted_at > since,
            counted_at <= until,
        )
        .scalar_subquery()
    )
    return ledger + unknown


def contacts_of_messages(
    dialect: str, occurred_at: ColumnElement[datetime], *where: ColumnElement[bool]
) -> Insert:
    """``INSERT INTO contacts ... SELECT``: one ``message`` contact at ``occurred_at`` for each
    outbox message ``where`` selects (the dispatcher's record of a batch sent, a settled
    unknown message), on the database ``dialect`` (``sqlite`` or ``postgresql``).

    A message that has its contact already is skipped (the unique index of
    ``contacts.message_id``): a dispatcher that outlived its lease records ``sent`` after a
    provider event or ``outbox resolve --sent`` settled the message, and the message still
    counts once."""
    # The same statement in each dialect's words: ON CONFLICT is not in the generic insert.
    # Imported here: the PostgreSQL dialect costs a command on SQLite about 50 ms (#18).
    statement: PostgresqlInsert | SqliteInsert
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        statement = postgresql_insert(contacts)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(contacts)
    return statement.from_select(
        ["participant_id", "channel", "run_id", "occurred_at", "kind", "message_id"],
        select(
            outbox_messages.c.participant_id,
            outbox_messages.c.channel,
            outbox_messages.c.run_id,
            occurred_at,
            literal("message"),
            outbox_messages.c.id,
        ).where(*where),
    ).on_conflict_do_nothing(
        index_elements=[contacts.c.message_id], index_where=contacts.c.message_id.is_not(None)
    )


def settle_as_contact(session: Session, message_id: int, *, status: str = st.UNKNOWN) -> int:
    """Write the ``contacts`` row of message ``message_id``, left in ``status`` (``unknown``,
    or ``sending`` with a lease that ran out), which turned out to have gone: at the instant
    it was counted at while unknown. Call it in the transaction that moves the message on,
    BEFORE that move (which overwrites ``updated_at``), with the row locked. Returns the rows
    written (0 when the message is not in ``status``, or has its contact already)."""
    result = session.execute(
        contacts_of_messages(
            session.get_bind().dialect.name,
            unknown_counted_at(),
            outbox_messages.c.id == message_id,
            outbox_messages.c.status == status,
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


__all__ = [
    "contact_count",
    "contact_times",
    "contacts_of_messages",
    "settle_as_contact",
    "unknown_counted_at",
]
