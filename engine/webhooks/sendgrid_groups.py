"""SendGrid suppression groups: a ``group_unsubscribe`` suppresses the address on email, and a
``group_resubscribe`` lifts that suppression again, and no other.

The groups an address left are data, apart from its suppression entry: one row of
``email_group_unsubscribes`` per (address hash, group), with SendGrid's event time
(``left_at``, the latest on replay) and when we recorded it. The suppression list keeps one
entry per (channel, address) with the source of its last writer, and a group entry is one
that still reads reason ``opt_out``, source :data:`SOURCE`. The rules:

- a group unsubscribe always records its row, whatever entry the address has (an erasure
  aside, below). An address
  with no email entry gets one (reason ``opt_out``, source :data:`SOURCE`); any other entry
  (our unsubscribe link, a bounce, a spam report, a coordinator's ``suppress add``...) stays
  exactly as it is, so a resubscribe can never lift what the member asked for another way;
- anything that suppresses the address afterwards writes its own source, so the entry is no
  longer a group entry;
- a group resubscribe newer than its group's ``left_at`` deletes that row (events arrive
  late and are replayed: an older one, one for a group never recorded, or one naming no
  group changes nothing). Then, if no row is left for the address and the email entry is a
  group entry, the entry is lifted; while other groups remain it stays (``narrowed``).

Group :data:`NO_GROUP` is one we cannot name: an unsubscribe without ``asm_group_id``, and
(migration 0012) every group entry written before groups were recorded, which may have
replaced an earlier opt-out. No resubscribe names it, so such an entry is never lifted; nor
is a group entry with no rows at all.

An erasure deletes the address's rows (engine/consent/suppressions.py), and a group
unsubscribe of an erased address records none: the erasure already suppresses it, and the
groups it left are what the erasure forgets.

The decisions are :func:`judge_unsubscribe` and :func:`judge_resubscribe` (pure); the
resubscribe's row in message_events records the latter (:func:`Resubscribe.audit`), as the
trail of what was lifted. A resubscribe that arrives before the unsubscribe it follows finds
nothing to lift, and the late unsubscribe then suppresses: an opt-out is never dropped on
the strength of an event we cannot tie to it.

Both first lock the address's entries on email and all channels (FOR UPDATE on PostgreSQL),
so two webhooks for one address take turns; a resubscribe then locks the address's rows, and
an unsubscribe writes its row with an upsert, so two from one group never collide. All SQL
on ``email_group_unsubscribes`` is here, but the erasure's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine.consent.opt_outs import suppress
from engine.consent.suppressions import hash_normalised, normalise_address
from engine.db.models import NO_GROUP, EmailGroupUnsubscribe, Suppression

SOURCE = "sendgrid_group_unsubscribe"
_MAX_GROUP = 2**63 - 1  # the column is a BIGINT

Outcome = Literal["lifted", "narrowed", "kept", "not_suppressed"]
Unsubscribed = Literal["suppressed", "group_added", "already_suppressed", "erased"]
Entry = tuple[str, str]  # (reason, source) of an address's email suppression


def group_id(value: object) -> int | None:
    """SendGrid's ``asm_group_id`` (an integer, or its decimal text); None for anything else."""
    if isinstance(value, str):
        digits = value.strip()
        # A BIGINT has 19 digits; int() would refuse text of thousands.
        if digits.isascii() and digits.isdigit() and len(digits) <= 20:
            value = int(digits)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_GROUP:
        return value
    return None


def _named(group: int) -> str:
    return "a group not named" if group == NO_GROUP else f"group {group}"


def _is_group_entry(entry: Entry) -> bool:
    return entry == ("opt_out", SOURCE)


def _entry(suppression: Suppression | None) -> Entry | None:
    return None if suppression is None else (suppression.reason, suppression.source)


def judge_unsubscribe(entry: Entry | None, *, erased: bool) -> Unsubscribed:
    """What a group unsubscribe does (pure): ``erased`` records nothing; the others record
    the group left, and ``suppressed`` creates the email entry as well."""
    if erased:
        return "erased"
    if entry is None:
        return "suppressed"
    return "group_added" if _is_group_entry(entry) else "already_suppressed"


@dataclass(frozen=True)
class Verdict:
    """What a resubscribe does: ``rejoined`` is the group whose row it deletes (None: none);
    the entry is lifted when ``outcome`` is ``lifted``."""

    outcome: Outcome
    why: str
    rejoined: int | None = None


def judge_resubscribe(
    entry: Entry | None, groups: Mapping[int, datetime], group: int | None, occurred_at: datetime
) -> Verdict:
    """What a resubscribe to ``group`` at ``occurred_at`` does (pure), given the address's
    email entry and the groups it left (``groups``: group -> left_at)."""
    left_at = None if group is None or group == NO_GROUP else groups.get(group)
    rejoined = group if left_at is not None and occurred_at > left_at else None
    if entry is None:
        return Verdict("not_suppressed", "no email suppression", rejoined)
    if not _is_group_entry(entry):
        reason, source = entry
        return Verdict("kept", f"suppressed another way ({reason}, source {source})", rejoined)
    if not groups:
        return Verdict("kept", "no group left is on record (an entry from before they were)")
    if group is None or group == NO_GROUP:
        return Verdict("kept", "the event names no suppression group")
    if left_at is None:
        return Verdict("kept", f"the address never left group {group} through SendGrid")
    if rejoined is None:
        return Verdict("kept", f"older than leaving group {group} at {left_at.isoformat()}")
    still = sorted(g for g in groups if g != group)
    if still:
        names = ", ".join(_named(g) for g in still)
        return Verdict("narrowed", f"still unsubscribed from {names}", rejoined)
    return Verdict("lifted", f"resubscribed to group {group}, the last one it had left", rejoined)


@dataclass(frozen=True)
class Resubscribe:
    verdict: Verdict
    entry: dict[str, Any] | None  # the entry as it was, for the trail

    def audit(self) -> dict[str, Any]:
        """What the event's message_events row records of it."""
        trail: dict[str, Any] = {"outcome": self.verdict.outcome, "why": self.verdict.why}
        if self.entry is not None:
            trail["entry"] = self.entry
        return trail


def _entries(session: Session, digest: str) -> dict[str, Suppression]:
    """The address's entries on email and on all channels, by channel, locked (PostgreSQL)
    until the transaction ends: a group change is read, then written, and two webhooks for
    one address must not interleave."""
    found = session.scalars(
        select(Suppression)
        .where(Suppression.channel.in_(("email", "all")))
        .where(Suppression.address_hash == digest)
        .order_by(Suppression.channel)
        .with_for_update()
    )
    return {entry.channel: entry for entry in found}


def _groups_left(session: Session, digest: str) -> dict[int, datetime]:
    """group -> left_at of every group the address left, locked (PostgreSQL): an unsubscribe
    from one of them waits until this transaction has deleted or kept the row."""
    rows = session.execute(
        select(EmailGroupUnsubscribe.group_id, EmailGroupUnsubscribe.left_at)
        .where(EmailGroupUnsubscribe.address_hash == digest)
        .with_for_update()
    )
    return {group: left_at for group, left_at in rows}


def _record_left(
    session: Session, digest: str, group: int, left_at: datetime, *, at: datetime
) -> None:
    """Record that the address left ``group`` at ``left_at``; a row with a later ``left_at``
    stays as it is (a replayed or late older unsubscribe)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(EmailGroupUnsubscribe).values(
        address_hash=digest, group_id=group, left_at=left_at, recorded_at=at
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["address_hash", "group_id"],
            set_={"left_at": statement.excluded.left_at, "recorded_at": at},
            where=statement.excluded.left_at > EmailGroupUnsubscribe.left_at,
        )
    )


def unsubscribe(
    session: Session,
    address: str,
    group: int | None,
    occurred_at: datetime,
    *,
    at: datetime,
    default_region: str = "US",
) -> Unsubscribed:
    """Record that ``address`` left ``group`` (None: a group not named) and suppress it on
    email as :func:`judge_unsubscribe` says. Raises InputError for an address that is not an
    email address."""
    normalised = normalise_address(address, default_region=default_region)
    digest = hash_normalised(normalised)
    entries = _entries(session, digest)
    done = judge_unsubscribe(
        _entry(entries.get("email")),
        erased=any(entry.reason == "erasure" for entry in entries.values()),
    )
    if done == "erased":
        return done
    group = NO_GROUP if group is None else group
    _record_left(session, digest, group, occurred_at, at=at)
    if done == "suppressed":
        suppress(
            session,
            address,
            "email",
            "opt_out",
            SOURCE,
            at=at,
            note=f"SendGrid group unsubscribe ({_named(group)})",
            default_region=default_region,
        )
    return done


def resubscribe(
    session: Session,
    address: str,
    group: int | None,
    occurred_at: datetime,
    *,
    default_region: str = "US",
) -> Resubscribe:
    """Strike ``group`` from the groups ``address`` left and lift its group entry when
    :func:`judge_resubscribe` says so. Raises InputError for an address that is neither an
    email nor a phone number."""
    normalised = normalise_address(address, default_region=default_region)
    digest = hash_normalised(normalised)
    entry = _entries(session, digest).get("email")  # locked before the rows, as unsubscribe
    verdict = judge_resubscribe(
        _entry(entry),
        _groups_left(session, digest),
        group,
        occurred_at,
    )
    if verdict.rejoined is not None:
        session.execute(
            delete(EmailGroupUnsubscribe)
            .where(EmailGroupUnsubscribe.address_hash == digest)
            .where(EmailGroupUnsubscribe.group_id == verdict.rejoined)
        )
    if entry is None:
        return Resubscribe(verdict, None)
    before = {
        "reason": entry.reason,
        "source": entry.source,
        "note": entry.note,
        "created_at": entry.created_at.isoformat(),
    }
    if verdict.outcome == "lifted":
        session.delete(entry)
    session.flush()
    return Resubscribe(verdict, before)


__all__ = [
    "NO_GROUP",
    "SOURCE",
    "Resubscribe",
    "Verdict",
    "group_id",
    "judge_resubscribe",
    "judge_unsubscribe",
    "resubscribe",
    "unsubscribe",
]
