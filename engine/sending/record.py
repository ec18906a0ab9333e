"""What a dispatcher has sent, recorded as it goes: hand-offs a span at a time, prompt outcomes.

A claimed batch (up to ten seconds of the channel's rate, e.g. 500 emails) is split at claim
time into **groups** of half ``dispatch_max_in_flight`` messages (:func:`group_size`), in the
order they will be sent; each group is a claim of its own (a ``dispatch_claims`` row,
``claimed``; its id is the batch's random base plus the group's number), written into its
messages' ``claim_id``. Groups are **handed off** (``claimed -> handed``, one conditional
UPDATE, :func:`hand_off_claims`) a **span** at a time: the groups that make up about
:data:`SPAN_SECONDS` of sending at the rate measured (:class:`SendRate`), at least one group,
at most :data:`MAX_SPAN` messages (:func:`hand_off_span`). A span's hand-off is committed
before its first request, with every outcome known by then, on the worker's writing thread
(:class:`Recorder`); outcomes are also written there at least every :data:`FLUSH_SECONDS`.
What was asked of the writer while it was busy goes in its next transaction together. At a
high rate this is a transaction per 50 ms rather than per 8 messages (a transaction costs
the writer tens of milliseconds on a loaded 2-core box, where its threads wait for the GIL
and, on PostgreSQL, every round trip waits for the server to get the CPU). So the writer
keeps its round trips and its Python few: on PostgreSQL it writes on connections of its own
that commit without waiting for the WAL flush and are not pinged at checkout, and its usual
write (messages sent plus a hand-off) is one statement in autocommit, one round trip
(:func:`record_sent_and_hand_off`); on SQLite its statements are built once.

The span's rate (:meth:`SendRate.for_spans`) leaves out the time the sending waited for a
hand-off: sized by a rate those waits hold down, spans would shrink to a group each, every
group a write to wait for, and the rate with them. Once a batch's requests are all answered,
the first span of the batch claimed ahead, and the next one (its lead reaches it), are handed
off in the write of the batch's last outcomes, so that neither waits for the writer either
(nothing is in flight then and every outcome is in that write: two spans, within
:func:`unknown_bound`).

A span's hand-off is written ahead, in the background, once the sending is at most
:func:`hand_off_lead` messages before its first request: a span (at least a group), plus the
requests that could be in flight but are not (a provider answering fast gets one at a time);
the first request waits until it is committed.

What a ``kill -9`` leaves ``unknown`` (``leases.housekeeping``: a dead dispatcher's rows of
handed claims): the rows of handed groups whose outcome was not yet committed. A hand-off written
when ``w`` requests were in flight commits every outcome that had come back;
after it, until the next hand-off commits, at most those ``w``, the ``lead`` messages before
the span and the span itself can be sent and unrecorded: ``w + lead + span =
dispatch_max_in_flight + 2 x span`` at most (:func:`unknown_bound`; a span is at least half the
in-flight limit): with the default 16 in flight, 32 at up to 160 messages a second (or, when
the writer holds the sending up, what 16 requests allow at the provider's answer time), at
most 144 at any rate (where a whole batch of up to 1,000 was before #16). The groups not handed
yet, and the batch claimed ahead, lapse back to ``queued`` (nothing of them went). A
dynamic-template chunk (one request for up to 1,000 messages) is handed off whole before its
request: that request is in flight for all of them.

Never sent twice: a message is sent only once its group's hand-off is committed, and the
hand-off and the lapse are each a conditional UPDATE of the group's row (``claimed ->
handed`` or ``claimed -> lapsed``), so exactly one of them happens: a lapsed group's messages
went back to the queue and its dispatcher sends none of them (its hand-off is refused); a
handed group's messages may have gone, so they end ``unknown`` when their lease ends, never
``queued``. An outcome write only changes a row still ``sending`` under its own claim (or, for
``sent``, also ``unknown``: a late record of what did go).
"""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Insert,
    String,
    Update,
    and_,
    bindparam,
    case,
    func,
    select,
    update,
)

from engine.channels.base import SendResult
from engine.db.models import Contact, DispatchClaim, OutboxMessage
from engine.sending import outbox_status as st
from engine.sending.contact_ledger import contacts_of_messages

# Outcomes known for this long are written, even mid-group (a group at 1 SMS/s lasts seconds).
FLUSH_SECONDS = 0.1
# A hand-off covers about this much sending (its span), at most MAX_SPAN messages: fewer
# writes at high rates (each costs the writer a transaction), few unknown after a kill.
SPAN_SECONDS = 0.05
MAX_SPAN = 64
# The send rate that sizes the spans is measured over about this long.
RATE_SECONDS = 0.2
# A batch's groups are claims base + 0, base + 1, ...: room for a batch of 1,000 in groups of 1.
GROUP_BITS = 10
# Set in a PostgreSQL connection's ``info`` when its sessions already commit without waiting
# for the WAL flush (the dispatcher's writing connections): no SET LOCAL per transaction.
ASYNC_COMMIT = "campaign_async_commit"
# A claim's states (dispatch_claims.state; see the module docstring).
CLAIMED, HANDED, LAPSED = "claimed", "handed", "lapsed"


def new_claim_base() -> int:
    """A random claim id whose low :data:`GROUP_BITS` are free for the group numbers."""
    return secrets.randbits(63 - GROUP_BITS) << GROUP_BITS


def group_size(max_in_flight: int) -> int:
    """Messages per claim group: half the in-flight limit (rounded up)."""
    return max(1, (max_in_flight + 1) // 2)


def hand_off_span(max_in_flight: int, rate: float) -> int:
    """How many messages one hand-off covers, a whole number of groups: about
    :data:`SPAN_SECONDS` of sending at ``rate`` (messages a second, as measured), at least one
    group, at most :data:`MAX_SPAN` messages (or one group, if larger)."""
    group = group_size(max_in_flight)
    wanted = min(MAX_SPAN, math.ceil(rate * SPAN_SECONDS))
    return group * max(1, wanted // group)


def hand_off_lead(max_in_flight: int, window: int, span: int) -> int:
    """How many messages before a span's first request its hand-off may be written: the
    requests that could be in flight but are not (``window``: how many may be now), plus
    :func:`lead_allowance`, so that the unknown after a kill stay within
    :func:`unknown_bound`."""
    return max_in_flight - window + lead_allowance(max_in_flight, span)


def lead_allowance(max_in_flight: int, span: int) -> int:
    """Messages of a span before its hand-off's first request that may go meanwhile: half
    the span, at least one group (time for the writer to commit it)."""
    return max(group_size(max_in_flight), span)


def unknown_bound(max_in_flight: int, rate: float) -> int:
    """The most messages a ``kill -9`` can leave ``unknown`` when the spans are sized by a rate
    of at most ``rate`` (:meth:`SendRate.for_spans`: the send rate, or what the requests in
    flight allow at the provider's answer time): the in-flight limit, one hand-off span and
    its lead (the module docstring)."""
    span = hand_off_span(max_in_flight, rate)
    return max_in_flight + span + lead_allowance(max_in_flight, span)


class SendRate:
    """Requests started a second, measured over the last :data:`RATE_SECONDS` or so (what the
    hand-off spans are sized by, :meth:`for_spans`)."""

    def __init__(self) -> None:
        self.rate = 0.0
        # The same, leaving out the time the sending waited for a hand-off to be committed.
        self.unstalled = 0.0
        self._count = 0
        self._waited = 0.0
        self._since = time.monotonic()

    def started(self) -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._since >= RATE_SECONDS:
            self.rate = self._count / (now - self._since)
            self.unstalled = self._count / max(now - self._since - self._waited, RATE_SECONDS / 10)
            self._count, self._waited, self._since = 0, 0.0, now

    def waited(self, seconds: float) -> None:
        """The sending waited ``seconds`` for a hand-off (the writer was behind)."""
        self._waited += seconds

    def for_spans(self, window: int, latency: float) -> float:
        """The rate the hand-off spans are sized by: the rate measured, or, when the sending
        waited for hand-offs, the rate it kept up between the waits, at most what ``window``
        requests in flight allow at the provider's answer time (``latency``). Spans sized by a
        rate that the waits themselves hold down would shrink, each a write, until every group
        waited for a write of its own (a writer slower than :data:`SPAN_SECONDS` took the rate
        down to a group per write)."""
        allowed = window / latency if latency > 0 else self.unstalled
        return max(self.rate, min(self.unstalled, allowed))


@dataclass
class ClaimedRow:
    """A claimed message with what its gate and its request need."""

    id: int
    uid: str
    run_id: int
    participant_id: int
    campaign: str
    channel: str
    to_address: str | None
    content: dict[str, Any]
    attempts: int
    not_before: datetime
    enrollment_state: str
    email: str | None
    phone: str | None
    timezone: str | None
    program_id: int
    name: str | None
    claim: int  # the group's claim (dispatch_claims.id) that holds it


@dataclass
class Outcome:
    """What became of one claimed message (``status`` is where its row moves)."""

    row: ClaimedRow
    status: str
    reason: str | None = None
    not_before: datetime | None = None
    attempts: int | None = None
    error: str | None = None
    result: SendResult | None = None
    address: str | None = None


def released(rows: Sequence[ClaimedRow]) -> list[Outcome]:
    """Back to the queue untouched (nothing of them went)."""
    return [Outcome(r, st.QUEUED, "released", r.not_before, r.attempts) for r in rows]


# --------------------------------------------------------------------------- the hand-off

# A claim moves on from `claimed` once: to `handed` here, or to `lapsed` in the housekeeping.
_HAND_OFF = (
    update(DispatchClaim)
    .where(
        DispatchClaim.id.in_(bindparam("claims", expanding=True)), DispatchClaim.state == CLAIMED
    )
    .values(state=HANDED)
    .returning(DispatchClaim.id)
)
# SQLite: the same, the claims as one JSON parameter (an expanding IN is rendered again at
# every execution: it cost the writer more than the statement).
_SQLITE_HAND_OFF = (
    update(DispatchClaim)
    .where(
        DispatchClaim.id.in_(
            select(func.json_each(bindparam("claims", type_=String)).table_valued("value").c.value)
        ),
        DispatchClaim.state == CLAIMED,
    )
    .values(state=HANDED)
    .returning(DispatchClaim.id)
)


def hand_off_claims(connection: Connection, claims: Sequence[int]) -> set[int]:
    """Mark ``claims`` handed to the sending thread (committed by the caller before their
    first request); return those handed off. A claim left out had its lease run out first and
    housekeeping put it back in the queue (``lapsed``; or its row is gone): none of it may be
    sent.

    On PostgreSQL the row lock orders it with a lapse (READ COMMITTED re-reads ``state`` after
    waiting); on SQLite each write has the database to itself."""
    if connection.dialect.name == "sqlite":
        result = connection.execute(_SQLITE_HAND_OFF, {"claims": json.dumps(list(claims))})
    else:
        result = connection.execute(_HAND_OFF, {"claims": list(claims)})
    return {claim for (claim,) in result}


# --------------------------------------------------------------------------- the outcomes

_OTHER = (
    update(OutboxMessage)
    .where(
        and_(
            OutboxMessage.id == bindparam("b_id"),
            OutboxMessage.status == st.SENDING,
            # Still this claim's: not queued again by a lapse, nor claimed by another since.
            OutboxMessage.claim_id == bindparam("b_claim"),
        )
    )
    .values(
        status=bindparam("b_status"),
        status_reason=bindparam("b_reason"),
        not_before=bindparam("b_not_before"),
        attempts=bindparam("b_attempts"),
        last_error=bindparam("b_error"),
        claimed_until=None,
        updated_at=bindparam("b_at"),
    )
)

# SQLite: the (id, provider message id) pairs of the sent messages, from one JSON parameter.
_JSON_PAIRS = func.json_each(bindparam("pairs", type_=String)).table_valued("value")

# PostgreSQL: the sent messages' status and provider ids in one UPDATE (every extra UPDATE
# of a row costs a new row version and index entries there), and their rows in the contacts
# ledger (what frequency caps count) from what it returns: one round trip. A webhook may
# already have moved a message on (delivered...): its status is kept; and a message settled
# while its lease had run out (a provider event, `outbox resolve --sent`) has its contact
# already: skipped (see engine/sending/contact_ledger.py contacts_of_messages).
_PG_RECORD_SENT = """
WITH sent AS (
    UPDATE outbox_messages AS o SET
        status = CASE WHEN o.status IN ('sending', 'unknown') THEN 'sent' ELSE o.status END,
        status_reason = NULL, claimed_until = NULL, attempts = o.attempts + 1, provider = %s,
        sent_at = %s, updated_at = %s, last_error = NULL,
        provider_message_id = COALESCE(v.pid, o.provider_message_id)
    FROM unnest(%s::bigint[], %s::text[]) AS v(id, pid) WHERE o.id = v.id
    RETURNING o.participant_id, o.channel, o.run_id, o.id
)
INSERT INTO contacts (participant_id, channel, run_id, occurred_at, kind, message_id)
SELECT participant_id, channel, run_id, %s, 'message', id FROM sent
ON CONFLICT (message_id) WHERE message_id IS NOT NULL DO NOTHING
"""


# PostgreSQL, the writer's usual write as one statement, one round trip on a connection in
# autocommit (a statement is a transaction of its own; BEGIN and COMMIT would be two more):
# the messages sent, as _PG_RECORD_SENT, and the hand-off of claims (as _HAND_OFF), returning
# the claims handed off. Under load each round trip costs the writer a wait for the CPU.
_PG_RECORD_SENT_AND_HAND_OFF = """
WITH sent AS (
    UPDATE outbox_messages AS o SET
        status = CASE WHEN o.status IN ('sending', 'unknown') THEN 'sent' ELSE o.status END,
        status_reason = NULL, claimed_until = NULL, attempts = o.attempts + 1, provider = %s,
        sent_at = %s, updated_at = %s, last_error = NULL,
        provider_message_id = COALESCE(v.pid, o.provider_message_id)
    FROM unnest(%s::bigint[], %s::text[]) AS v(id, pid) WHERE o.id = v.id
    RETURNING o.participant_id, o.channel, o.run_id, o.id
), ledger AS (
    INSERT INTO contacts (participant_id, channel, run_id, occurred_at, kind, message_id)
    SELECT participant_id, channel, run_id, %s, 'message', id FROM sent
    ON CONFLICT (message_id) WHERE message_id IS NOT NULL DO NOTHING
)
UPDATE dispatch_claims SET state = 'handed'
WHERE id = ANY(%s::bigint[]) AND state = 'claimed'
RETURNING id
"""


def in_one_statement(outcomes: Sequence[Outcome]) -> bool:
    """Whether ``outcomes`` can be written by :func:`record_sent_and_hand_off`: all sent, each
    to the address its row holds."""
    return all(
        o.status == st.SENT and (not o.address or o.address == o.row.to_address) for o in outcomes
    )


def record_sent_and_hand_off(
    connection: Connection,
    outcomes: Sequence[Outcome],
    provider: str,
    at: datetime,
    claims: Sequence[int],
) -> set[int]:
    """PostgreSQL: write ``outcomes`` (:func:`in_one_statement`) and hand off ``claims`` in
    one statement (see _PG_RECORD_SENT_AND_HAND_OFF); return the claims handed off."""
    ids = [o.row.id for o in outcomes]
    provider_ids = [
        o.result.provider_message_id if o.result is not None else None for o in outcomes
    ]
    result = connection.exec_driver_sql(
        _PG_RECORD_SENT_AND_HAND_OFF,
        (provider, at, at, ids, provider_ids, at, list(claims)),
    )
    return {claim for (claim,) in result}


def write_outcomes(
    connection: Connection, outcomes: Sequence[Outcome], provider: str, at: datetime
) -> None:
    """Write outcomes in a few set-based statements inside the caller's transaction (no
    per-row ORM work: this is on the hot path of every message)."""
    if not outcomes:
        return
    sent_ids: list[int] = []
    provider_ids: dict[int, str] = {}
    moved: list[tuple[str, int]] = []
    other: list[dict[str, Any]] = []
    for outcome in outcomes:
        row = outcome.row
        if outcome.status == st.SENT:
            sent_ids.append(row.id)
            if outcome.result is not None and outcome.result.provider_message_id:
                provider_ids[row.id] = outcome.result.provider_message_id
            if outcome.address and outcome.address != row.to_address:
                moved.append((outcome.address, row.id))
            continue
        assert st.can_move(st.SENDING, outcome.status), outcome.status
        other.append(
            {
                "b_id": row.id,
                "b_claim": row.claim,
                "b_status": outcome.status,
                "b_reason": outcome.reason,
                "b_not_before": outcome.not_before or row.not_before,
                "b_attempts": row.attempts if outcome.attempts is None else outcome.attempts,
                "b_error": outcome.error,
                "b_at": at,
            }
        )
    postgres = connection.dialect.name == "postgresql"
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    if postgres and not connection.info.get(ASYNC_COMMIT):
        # No waiting for this commit's WAL flush: should the server crash before it, these
        # rows are 'sending' again, and their leases make them 'unknown' (never queued, never
        # resent: the crash empties the UNLOGGED dispatch_claims, and a missing claim counts
        # as handed off), as after a crash of ours. A claim's commit does wait: a lost claim
        # would put a sent message back in the queue.
        connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
    if sent_ids and postgres:
        connection.exec_driver_sql(
            _PG_RECORD_SENT,
            (provider, at, at, sent_ids, [provider_ids.get(i) for i in sent_ids], at),
        )
    elif sent_ids:
        _write_sent_sqlite(connection, sent_ids, provider_ids, provider, at)
    if moved:
        connection.exec_driver_sql(
            f"UPDATE outbox_messages SET to_address = {mark} WHERE id = {mark}", moved
        )
    if other:
        connection.execute(_OTHER, other)


def _sqlite_record_sent() -> tuple[Update, Insert]:
    """SQLite's record of the sent messages: their status and provider ids in one statement,
    the pairs as one JSON parameter (an executemany here costs a statement and a GIL
    hand-over per row), then their rows in the contacts ledger (what frequency caps count),
    by the same parameter (an expanding IN is rendered again at every execution). Built
    once: building a statement costs the writer more than running it."""
    pairs = (
        select(
            func.json_extract(_JSON_PAIRS.c.value, "$[0]").label("id"),
            func.json_extract(_JSON_PAIRS.c.value, "$[1]").label("pid"),
        )
        .select_from(_JSON_PAIRS)
        .subquery()
    )
    at = bindparam("b_at", type_=OutboxMessage.__table__.c.sent_at.type)
    sent = (
        update(OutboxMessage)
        .where(OutboxMessage.id == pairs.c.id)
        .values(
            # A webhook may already have moved it on (delivered...): keep that.
            status=case(
                (OutboxMessage.status.in_((st.SENDING, st.UNKNOWN)), st.SENT),
                else_=OutboxMessage.status,
            ),
            status_reason=None,
            claimed_until=None,
            attempts=OutboxMessage.attempts + 1,
            provider=bindparam("b_provider", type_=String),
            sent_at=at,
            updated_at=at,
            last_error=None,
            provider_message_id=func.coalesce(pairs.c.pid, OutboxMessage.provider_message_id),
        )
    )
    contacts = contacts_of_messages(
        "sqlite",
        bindparam("b_at", type_=Contact.__table__.c.occurred_at.type),
        OutboxMessage.id.in_(select(pairs.c.id)),
    )
    return sent, contacts


_SQLITE_RECORD_SENT, _SQLITE_SENT_CONTACTS = _sqlite_record_sent()


def _write_sent_sqlite(
    connection: Connection,
    sent_ids: Sequence[int],
    provider_ids: dict[int, str],
    provider: str,
    at: datetime,
) -> None:
    pairs = json.dumps([[i, provider_ids.get(i)] for i in sent_ids])
    connection.execute(_SQLITE_RECORD_SENT, {"pairs": pairs, "b_provider": provider, "b_at": at})
    connection.execute(_SQLITE_SENT_CONTACTS, {"pairs": pairs, "b_at": at})


# --------------------------------------------------------------------------- the writer


@dataclass
class _Write:
    """One request to the writing thread: outcomes and claims to hand off, and its answer."""

    outcomes: Sequence[Outcome]
    provider: str
    claims: Sequence[int]
    done: Future[tuple[int, frozenset[int]]]


class Recorder:
    """One dispatcher worker's writing thread: outcomes are written as they come, in order,
    and each hand-off with the outcomes known by then. What was asked while the thread was
    busy goes in its next transaction together (a writer that lags catches up in one commit
    instead of one per request).

    ``transaction()`` opens a writing transaction and yields its connection; ``now()`` is the
    instant written; ``report(n)`` is told, on the caller's thread, of each write of ``n``
    messages handled (the released ones are not). Driven by one thread (the worker's)."""

    def __init__(
        self,
        transaction: Callable[[], AbstractContextManager[Connection]],
        now: Callable[[], datetime],
        report: Callable[[int], None],
        *,
        name: str = "dispatch-write",
        statement: Callable[[], AbstractContextManager[Connection]] | None = None,
    ) -> None:
        self._transaction = transaction
        # PostgreSQL: a connection in autocommit, for the writes that are one statement.
        self._statement = statement
        self._now = now
        self._report = report
        self._writer = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._pending: list[Outcome] = []
        self._provider = ""
        self._flushed_at = time.monotonic()
        self._jobs: deque[Future[tuple[int, frozenset[int]]]] = deque()
        self._inbox: list[_Write] = []
        self._inbox_lock = threading.Lock()
        self.writes = 0  # transactions written (for the measurements)

    @property
    def busy(self) -> bool:
        """Whether some outcome is not written yet."""
        return bool(self._pending) or any(not job.done() for job in self._jobs)

    def add(self, outcome: Outcome, provider: str) -> None:
        if self._pending and provider != self._provider:
            self.flush()
        self._provider = provider
        self._pending.append(outcome)

    def flush_if_due(self) -> None:
        """Write what is pending when it has waited :data:`FLUSH_SECONDS` (in the background).
        Called after every request: the writes done are reported at the flush, not here."""
        if self._pending and time.monotonic() - self._flushed_at >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write what is pending, in the background."""
        self._reap()
        if self._pending:
            self._submit(())

    def hand_off(self, claims: Sequence[int]) -> frozenset[int]:
        """Write what is pending and hand off ``claims`` in one transaction, after every write
        before it; return once it is committed, with those of ``claims`` handed off."""
        return self.handed(self.hand_off_later(claims))

    def hand_off_later(self, claims: Sequence[int]) -> Future[tuple[int, frozenset[int]]]:
        """:meth:`hand_off` in the background: :meth:`handed` waits for it."""
        return self._submit(claims)

    def handed(self, job: Future[tuple[int, frozenset[int]]]) -> frozenset[int]:
        """Wait for the hand-off ``job`` (and the writes before it): the claims it handed off."""
        if job in self._jobs:
            self._reap(until=job)
        return job.result()[1]

    def wait(self) -> None:
        """Wait for every write; raise the first error (the others are dropped)."""
        self.flush()
        self._reap(until=self._jobs[-1] if self._jobs else None)

    def close(self) -> None:
        self._writer.shutdown(wait=True)

    def _submit(self, claims: Sequence[int]) -> Future[tuple[int, frozenset[int]]]:
        outcomes, self._pending = self._pending, []
        self._flushed_at = time.monotonic()
        request = _Write(outcomes, self._provider, tuple(claims), Future())
        with self._inbox_lock:
            self._inbox.append(request)
        self._writer.submit(self._drain)
        self._jobs.append(request.done)
        return request.done

    def _drain(self) -> None:
        """Write every request asked so far in one transaction (none: an earlier drain took
        them), in the order asked."""
        with self._inbox_lock:
            requests, self._inbox = self._inbox, []
        if not requests:
            return
        try:
            handed = self._write(requests)
            self.writes += 1
        except BaseException as exc:
            for request in requests:
                request.done.set_exception(exc)
            return
        for request in requests:
            handled = sum(1 for o in request.outcomes if o.reason != "released")
            request.done.set_result((handled, frozenset(handed & set(request.claims))))

    def _write(self, requests: Sequence[_Write]) -> set[int]:
        """Write ``requests`` in one transaction; return the claims handed off."""
        claims = [claim for request in requests for claim in request.claims]
        outcomes = [outcome for request in requests for outcome in request.outcomes]
        providers = {request.provider for request in requests if request.outcomes}
        if self._statement is not None and len(providers) <= 1 and in_one_statement(outcomes):
            provider = next(iter(providers), "")
            with self._statement() as connection:
                return record_sent_and_hand_off(connection, outcomes, provider, self._now(), claims)
        with self._transaction() as connection:
            at = self._now()
            by_provider: dict[str, list[Outcome]] = {}
            for request in requests:
                if request.outcomes:
                    by_provider.setdefault(request.provider, []).extend(request.outcomes)
            for provider, written in by_provider.items():
                write_outcomes(connection, written, provider, at)
            if (
                claims
                and not by_provider
                and connection.dialect.name == "postgresql"
                and not connection.info.get(ASYNC_COMMIT)
            ):
                # A hand-off alone need not wait for its WAL flush either: a server crash
                # empties the UNLOGGED dispatch_claims, and a missing claim counts as
                # handed off (its rows end unknown, never queued).
                connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
            return hand_off_claims(connection, claims) if claims else set()

    def _reap(self, until: Future[tuple[int, frozenset[int]]] | None = None) -> None:
        """Report the writes done (all of them up to ``until``, waiting for it); raise the
        first error."""
        while self._jobs and (self._jobs[0].done() or until is not None):
            job = self._jobs.popleft()
            handled, _ = job.result()
            self._report(handled)
            if job is until:
                return
