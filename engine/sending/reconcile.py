"""``campaign outbox reconcile``: settle messages of unknown fate from the providers' own logs.

A message is ``unknown`` when its dispatcher died (or timed out) after its request may have
gone (engine/sending/record.py). The providers know: this reads their logs for each unknown
message, in id order a page at a time, and settles as ``sent`` (with the provider's id, and
its row in the contacts ledger at the instant the caps counted it at) each one they took:

- email, SendGrid's Email Activity API: our message id travels as the custom argument
  ``message_id`` of every personalization, so ``GET /v3/messages?query=unique_args[...]``
  finds it (engine/channels/sendgrid.py ``find_sent``; the account needs that add-on);
- SMS, Twilio's Messages list: Twilio keeps no argument of ours, so a message to the same
  number with the same text, sent since the message was claimed, not already the record of
  another of our messages, is it; two such candidates are left to a person (``ambiguous``).

The rest stays ``unknown``, counted by why: ``not_found`` (not in the log: it may not have
gone, or the log lags by minutes: run it again later, then `outbox resolve --resend`),
``ambiguous``, ``no_provider`` (its channel has no provider credentials: nothing to ask),
``log_unreadable`` (the provider refused or could not be reached; said once per channel).
Nothing is ever resent by this command. ``dry_run`` reads and counts without writing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.app import App
from engine.channels.base import ProviderLogError, ProviderRecord
from engine.clock import ensure_utc
from engine.db.models import OutboxMessage
from engine.db.session import writing
from engine.errors import NotFoundError
from engine.sending import outbox_status as st
from engine.sending.contact_ledger import settle_as_contact

PAGE = 200  # unknown messages read (and settled) per transaction
# A provider's clock and ours differ a little: its log is read from a little before the claim.
CLOCK_SLACK = timedelta(minutes=5)


class _EmailLog(Protocol):
    name: str

    def find_sent(self, message_id: str) -> list[ProviderRecord]: ...


class _SmsLog(Protocol):
    name: str

    def find_sent(self, to: str, body: str, since: datetime) -> list[ProviderRecord]: ...


@dataclass
class ReconcileSummary:
    """What a reconcile did: ``settled`` as sent, and why the others stay unknown."""

    checked: int = 0
    settled: int = 0
    left: dict[str, int] = field(default_factory=dict)  # reason -> count (still unknown)
    problems: list[str] = field(default_factory=list)  # one line per unreadable log
    dry_run: bool = False
    settled_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Unknown:
    id: int
    uid: str
    channel: str
    to: str | None
    body: str | None
    claimed_at: datetime


def reconcile(
    app: App,
    logs: Mapping[str, Any],
    *,
    run_id: int | None = None,
    since: datetime | None = None,
    dry_run: bool = False,
) -> ReconcileSummary:
    """Settle the unknown messages (of run ``run_id``, left unknown since ``since``) that
    the providers' logs (``logs``: channel kind -> an adapter with ``find_sent``; a kind
    missing, or an adapter without it, has no log) show they took; see the module docstring."""
    if run_id is not None:
        with app.sessions() as session:
            first = select(OutboxMessage.id).where(OutboxMessage.run_id == run_id).limit(1)
            if session.scalar(first) is None:
                raise NotFoundError(f"run {run_id} has no message; see `campaign runs list`")
    summary = ReconcileSummary(dry_run=dry_run)
    left: Counter[str] = Counter()
    unreadable: set[str] = set()
    lease = app.settings.dispatch_lease
    for page in _pages(app, run_id, since, lease):
        found: dict[int, ProviderRecord] = {}
        for message in page:
            summary.checked += 1
            log = logs.get(message.channel)
            if log is None or not hasattr(log, "find_sent"):
                left["no_provider"] += 1
                continue
            if message.channel in unreadable:
                left["log_unreadable"] += 1
                continue
            try:
                records = _look_up(log, message)
            except ProviderLogError as exc:
                unreadable.add(message.channel)
                summary.problems.append(f"{message.channel}: {exc}")
                left["log_unreadable"] += 1
                continue
            if not records:
                left["not_found"] += 1
            elif len(records) > 1 and message.channel == "sms":
                left["ambiguous"] += 1
            else:
                found[message.id] = records[0]
        if not found:
            continue
        with writing(app.sessions) as session:  # SQLite ignores FOR UPDATE: lock first
            settled = _settle(
                session, found, app.clock.now(), dry_run=dry_run, logs=logs, lease=lease
            )
        summary.settled += len(settled)
        summary.settled_ids.extend(settled)
        if len(settled) < len(found):  # settled meanwhile by someone else, or taken already
            left["settled_meanwhile"] += len(found) - len(settled)
    summary.left = dict(sorted(left.items()))
    return summary


def _look_up(log: Any, message: _Unknown) -> list[ProviderRecord]:
    if message.channel == "email":
        records: list[ProviderRecord] = log.find_sent(message.uid)
        return records[:1]
    if not message.to or message.body is None:
        return []
    return list(log.find_sent(message.to, message.body, message.claimed_at - CLOCK_SLACK))


def _pages(
    app: App, run_id: int | None, since: datetime | None, lease: timedelta
) -> Iterator[list[_Unknown]]:
    after = 0
    while True:
        where = [OutboxMessage.status == st.UNKNOWN, OutboxMessage.id > after]
        if run_id is not None:
            where.append(OutboxMessage.run_id == run_id)
        if since is not None:
            where.append(OutboxMessage.updated_at >= ensure_utc(since))
        with app.sessions() as session:
            rows = session.execute(
                select(
                    OutboxMessage.id,
                    OutboxMessage.uid,
                    OutboxMessage.channel,
                    OutboxMessage.to_address,
                    OutboxMessage.content,
                    OutboxMessage.claimed_until,
                    OutboxMessage.updated_at,
                )
                .where(*where)
                .order_by(OutboxMessage.id)
                .limit(PAGE)
            ).all()
        if not rows:
            return
        yield [
            _Unknown(
                id=row[0],
                uid=row[1],
                channel=row[2],
                to=row[3],
                body=(row[4] or {}).get("body"),
                # Claimed a lease before its lease's end (else: before it was left unknown).
                claimed_at=ensure_utc(row[5] or row[6]) - lease,
            )
            for row in rows
        ]
        after = rows[-1][0]


def _settle(
    session: Session,
    found: Mapping[int, ProviderRecord],
    at: datetime,
    *,
    dry_run: bool,
    logs: Mapping[str, Any],
    lease: timedelta,
) -> list[int]:
    """Mark ``found`` sent (those still unknown; an SMS only when no other message of ours
    has its provider id)."""
    messages = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.id.in_(sorted(found)), OutboxMessage.status == st.UNKNOWN)
        .with_for_update()
    ).all()
    taken = set(
        session.scalars(
            select(OutboxMessage.provider_message_id).where(
                OutboxMessage.provider_message_id.in_(
                    sorted({r.provider_message_id for r in found.values()})
                ),
                OutboxMessage.id.not_in(sorted(found)),
                OutboxMessage.channel == "sms",
            )
        )
    )
    settled = []
    for message in messages:
        record = found[message.id]
        if message.channel == "sms" and record.provider_message_id in taken:
            continue  # another message of ours is that one (an SMS of the same text)
        settled.append(message.id)
        if dry_run:
            continue
        provider = getattr(logs.get(message.channel), "name", None)
        settle_as_contact(session, message.id, status=st.UNKNOWN)
        message.status = st.SENT
        message.status_reason = f"reconciled: in {provider}'s log ({record.status})"
        message.provider = provider
        message.provider_message_id = record.provider_message_id
        claimed = message.claimed_until - lease if message.claimed_until else None
        message.sent_at = message.sent_at or record.at or claimed or at
        message.claimed_by = None
        message.claimed_until = None
        message.updated_at = at
    session.flush()
    return settled


__all__ = ["ReconcileSummary", "reconcile"]
