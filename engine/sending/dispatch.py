"""The outbox worker: claim due messages with a lease, gate them again, send, record, retry.

One pass of a worker, per channel in turn:

1. **Claim** up to about ten seconds' worth of the channel's rate of queued messages whose
   ``not_before`` has come, of runs that are ``active`` (or ``completed``: the sequencer
   completes a run once its last step is queued). PostgreSQL: ``UPDATE ... WHERE id IN (SELECT
   ... FOR UPDATE OF outbox_messages SKIP LOCKED LIMIT n)`` so any number of workers on any
   number of machines share the queue; SQLite: the same statement, one dispatcher at a time (an
   OS file lock, see :class:`DispatcherBusyError`). Claimed rows are ``sending`` with
   ``claimed_by``/``claimed_until`` (the lease) and their group's ``claim_id`` (a
   ``dispatch_claims`` row per group of ``dispatch_max_in_flight``, ``claimed``), committed
   before anything is sent. A claim skips
   participants with a message already ``sending`` (claims take turns on PostgreSQL, an
   advisory lock), so no two workers gate and send to one person at once.
2. **Gate** each message with :func:`engine.policy.decide` against what is true NOW: consent,
   suppressions (by address hash), the recipient's candidate zones, the run's send window and
   the contacts ledger (with the messages left ``unknown``: they may have gone) under both
   the global cap (settings) and the campaign's own cap.
   ``WaitUntil`` puts it back to ``queued`` at the instant the rules allow (no attempt
   counted); ``Skip`` marks it ``skipped`` with the reason.
3. **Hand off** each group of ``dispatch_max_in_flight`` messages of the batch (the claim
   cuts it in groups, each a ``dispatch_claims`` row) to the sending thread right before the
   group's first request: its claim moves ``claimed -> handed``, one conditional UPDATE of one
   row, committed with the outcomes known by then (engine/sending/record.py).
   **Send** through the channel, paced by the rate limit of the channel and its sender (the
   From address; Twilio's messaging service, else its from number). PostgreSQL: one limit
   shared by every dispatcher on the database, whatever machine it runs on
   (engine/sending/shared_ratelimit.py: slots reserved in blocks on one timeline in the database).
   SQLite: one dispatcher at a time, so its own token bucket, shared by its workers, is the
   whole limit (engine/sending/ratelimit.py). Dynamic-template emails go in batches of up to 1,000
   personalizations (``SendGridChannel.send_batch``), each taking one slot per message.
   A provider that takes its time to answer gets up to ``dispatch_max_in_flight`` requests
   at once from each worker (engine/sending/in_flight.py), so that its latency does not set the send
   rate; each outcome is settled on the sending thread as it comes back.
4. **Record** the outcomes as they come (engine/sending/record.py: at each hand-off and at
   least every 100 ms, in a few set-based statements on the writing thread): ``sent`` with
   provider, provider message id and ``sent_at`` plus a ``contacts`` row (the frequency
   cap's ledger); an error
   that is the provider's (no connection, 5xx, 429: ``RetryableError``) puts the message back
   to ``queued`` with no attempt spent and opens the circuit of that provider and sender
   (engine/sending/circuits.py): nothing is claimed for that channel until its next probe, one
   request, whose success closes it; a message or recipient error ``failed`` (recipient errors
   with a suppression: opted out -> opt_out, invalid number/address -> invalid, source
   ``provider``); a campaign stop (401/403) puts the message back and pauses the run with the
   reason; an unknown outcome (timeout after the request went) is ``unknown``;
   ``dispatch_pause_after_failures`` consecutive provider failures on a run (other than an
   outage, which the circuit waits out, and a refusal of the message or recipient) pause it.

Each worker is three threads, so that the database's time overlaps the HTTP requests
instead of adding to them (issue #4): while a batch is being sent, one thread claims the next
batch and reads what its gate needs (consents, suppressions, the contacts ledger), and another
writes the outcomes as they come back. The gate's decisions are still taken just before a
batch goes, at that instant, from facts read while the batch before it was sent. A claim
skips everyone with a message ``sending`` (in flight or not yet written), so what it reads of
the ledger for the people it claims is complete. A batch claimed ahead stays ``sending`` like
the one in flight (so claims keep skipping its people), but none of its groups is handed off
before its turn: after a crash mid-batch, the groups not handed off yet and the batch claimed
ahead go back to ``queued``; only the requests in flight and one group may be ``unknown``.

Never sent twice: a row is sent only by the worker that moved it ``queued -> sending``, and
only once its group's claim is handed off. A worker that dies leaves its rows ``sending``;
when their lease runs out (or their dispatcher's heartbeat stops) any dispatcher
(:func:`_housekeeping`) marks them ``unknown`` if their group was handed off (they may have
gone: ``campaign outbox unknown`` lists them and ``campaign outbox resolve``, ``campaign outbox
reconcile`` or a provider event settles them), and otherwise moves the claim ``claimed ->
lapsed`` and puts them back to ``queued`` (nothing of them went). The hand-off and the lapse
are each one conditional UPDATE of the group's claim row, so one of them happens, never both:
a dispatcher that outlived its lease and finds a group lapsed sends none of it. A claim that
is missing (an older dispatcher's, or lost in a PostgreSQL crash: the table is UNLOGGED)
counts as handed off. An outcome written after a webhook already moved the row on
(``delivered``) keeps the later status.

Stopping (``stop`` event, deadline, ``max_messages``): the in-flight message finishes and is
recorded; the rest of the claimed batch, and the batch claimed ahead, go back to ``queued``
untouched.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    Connection,
    String,
    any_,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, aliased
from sqlalchemy.pool import NullPool

from engine.app import App
from engine.channels.base import (
    CampaignStopError,
    Channel,
    ChannelError,
    DuplicateSendError,
    MessageError,
    Outbound,
    OutboundEmail,
    RecipientError,
    RetryableError,
    SendResult,
    UnknownOutcomeError,
)
from engine.clock import ensure_utc
from engine.consent.suppressions import add_suppression, email_hash, hash_normalised
from engine.db.models import (
    CampaignRun,
    Consent,
    DispatchClaim,
    Enrollment,
    OutboxMessage,
    Participant,
    Program,
    Suppression,
)
from engine.db.session import make_engine
from engine.definitions.loader import parse_definition
from engine.definitions.schema import CampaignDefinition
from engine.errors import EngineError, InputError
from engine.metrics import recording as metrics
from engine.metrics.names import DISPATCHER
from engine.policy import (
    FrequencyCap,
    ParticipantFacts,
    SendNow,
    Skip,
    WaitUntil,
    candidate_zones,
    decide,
)
from engine.policy.decide import Decision
from engine.sending import outbox_status as st
from engine.sending.circuits import (
    PROVIDER_UNAVAILABLE,
    Circuit,
    circuit_of,
    open_circuits,
    strike_suspects,
    trip,
)
from engine.sending.circuits import close as close_circuit
from engine.sending.contact_ledger import contact_times
from engine.sending.deadlines import send_time_refusals
from engine.sending.in_flight import Done, InFlight
from engine.sending.outbox import build_outbound
from engine.sending.ratelimit import SlotLimiter
from engine.sending.record import (
    CLAIMED,
    FLUSH_SECONDS,
    LAPSED,
    Recorder,
    SendRate,
    group_size,
    hand_off_lead,
    hand_off_span,
    new_claim_base,
    released,
    write_outcomes,
)
from engine.sending.record import ClaimedRow as _Row
from engine.sending.record import Outcome as _Outcome
from engine.sending.sender_limits import rate_key, sender_limit
from engine.sending.shared_ratelimit import SharedTokenBucket

log = logging.getLogger(__name__)

# Runs whose queued messages go out. A run with a pending message is active (or paused, or
# cancelled): it completes only once none is left (engine/run_work.py).
SENDABLE_RUNS = ("active",)
CHANNEL_ORDER = ("email", "sms")
CLAIM_SECONDS = 10.0  # a claim holds about this many seconds of the channel's rate
POLL_SECONDS = 1.0  # follow mode: how often an idle worker looks for due messages
# A batch claimed ahead whose gate facts (consents, suppressions, contacts) are older than
# this when its turn comes has them read again: a slow batch before it (a rate limit holds a
# batch for seconds) must not let a suppression made meanwhile go unseen.
FACTS_MAX_AGE_SECONDS = 1.0
# While a batch is sent (at 1 SMS/s, ten seconds of it), its remaining recipients'
# suppressions are read again when the last read is older than this, right before a request:
# a STOP or an unsubscribe committed meanwhile stops the next message (#16).
SUPPRESSION_RECHECK_SECONDS = 0.25
# A live dispatcher moves the heartbeat of its claims on this often; a claim whose heartbeat
# is older than HEARTBEAT_GRACE is a dead dispatcher's, settled as if its lease had run out
# (the lease, CAMPAIGN_DISPATCH_LEASE, stays the longest a claim lives). The same thread runs
# the housekeeping every HOUSEKEEPING_SECONDS, so a busy dispatcher notices a dead one too.
HEARTBEAT_SECONDS = 10.0
HEARTBEAT_GRACE = timedelta(seconds=60)
HOUSEKEEPING_SECONDS = 60.0
# pg_advisory_xact_lock key taken by every claim (see _claim).
CLAIM_LOCK = 0x636C61696D  # "claim"


class DispatcherBusyError(EngineError):
    """SQLite: another dispatcher holds the database's dispatch lock."""


@dataclass
class DispatchSummary:
    """What a dispatch did. ``skipped`` counts by reason; ``waiting`` went back to the queue
    for a later instant (send window, cap); ``retried`` went back after a retryable error;
    ``released`` went back untouched when the dispatcher stopped; ``expired_leases`` are rows
    of dead dispatchers marked unknown, ``requeued_leases`` rows they had claimed but not
    handed off, queued again."""

    workers: int = 1
    claimed: int = 0
    sent: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    waiting: int = 0
    retried: int = 0
    failed: int = 0
    unknown: int = 0
    released: int = 0
    expired_leases: int = 0
    requeued_leases: int = 0
    cancelled_skipped: int = 0
    peak_in_flight: int = 0  # the most requests one worker had waiting for the provider
    paused_runs: list[int] = field(default_factory=list)
    # What went wrong that the operator must act on (an auto-pause that could not be applied).
    errors: list[str] = field(default_factory=list)
    # Channels waiting for their provider (an open circuit: engine/sending/circuits.py) at the end.
    waiting_for: list[Circuit] = field(default_factory=list)
    stopped_by: str = "drained"
    seconds: float = 0.0

    @property
    def handled(self) -> int:
        return (
            self.sent
            + sum(self.skipped.values())
            + self.waiting
            + self.retried
            + self.failed
            + self.unknown
        )

    def add(self, other: DispatchSummary) -> None:
        for name in ("claimed", "sent", "waiting", "retried", "failed", "unknown", "released"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, count in other.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + count
        self.peak_in_flight = max(self.peak_in_flight, other.peak_in_flight)


# --------------------------------------------------------------------------- SQLite lock


@contextmanager
def dispatch_lock(database_url: str) -> Iterator[None]:
    """SQLite: hold ``<db file>.dispatch.lock`` (flock; the kernel drops it when the process
    dies, even by kill -9) for the duration. PostgreSQL needs no lock: SKIP LOCKED shares."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        yield
        return
    path = f"{url.database}.dispatch.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise DispatcherBusyError(
                f"another dispatcher (pid {holder}) is running on {url.database}; SQLite "
                "allows one dispatcher at a time (it holds "
                f"{path}). Stop it first, or use PostgreSQL to run several"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- the gate


def gate_decision(
    channel: str,
    facts: ParticipantFacts,
    at: datetime,
    *,
    definition: CampaignDefinition,
    global_cap: FrequencyCap,
) -> Decision:
    """:func:`engine.policy.decide` under two caps: the global one and the campaign's own.

    ``decide`` takes one cap, so the two are chained: each answer's instant is asked again
    under the other until both agree (the instants only move forward; a few rounds suffice).
    """
    caps: list[FrequencyCap] = [global_cap]
    if definition.frequency_cap is not None:
        caps.append(FrequencyCap(definition.frequency_cap.max, definition.frequency_cap.per))
    when = at
    reason = "outside_window"
    for _ in range(8):
        start = when
        for cap in caps:
            answer = decide(channel, facts, when, send_window=definition.send_window, cap=cap)
            if isinstance(answer, Skip):
                return answer
            if isinstance(answer, WaitUntil):
                when, reason = answer.until, answer.reason
        if when == start:
            break
    if when == at:
        return SendNow()
    return WaitUntil(when, "frequency_cap" if reason == "frequency_cap" else "outside_window")


# --------------------------------------------------------------------------- internals


class _Shared:
    """State shared by the worker threads of one dispatch() call."""

    def __init__(
        self,
        app: App,
        channels: Mapping[str, Channel],
        *,
        deadline: float | None,
        max_messages: int | None,
        stop: threading.Event | None,
        progress: Callable[[int], None] | None,
        follow: bool,
    ) -> None:
        self.app = app
        self.settings = app.settings
        self.channels = channels
        self.deadline = deadline
        self.remaining = max_messages
        self.stop_event = stop or threading.Event()
        self.progress = progress
        self.follow = follow
        self.lock = threading.Lock()
        self.sqlite = make_url(self.settings.database_url).get_backend_name() == "sqlite"
        self.write_lock = threading.Lock()
        # PostgreSQL: the rate limits are shared through the database by every dispatcher,
        # each limit on a connection of its own outside the pool
        # (engine/sending/shared_ratelimit.py).
        self.limits_engine = (
            None if self.sqlite else make_engine(self.settings.database_url, poolclass=NullPool)
        )
        self.buckets: dict[str, SlotLimiter] = {
            kind: sender_limit(self.limits_engine, kind, channels.get(kind), app.settings)
            for kind in ("email", "sms")
        }
        # Each channel's circuit (engine/sending/circuits.py): its provider and sender, as its
        # limit.
        self.circuit_keys = {
            kind: rate_key(kind, channels.get(kind), app.settings) for kind in ("email", "sms")
        }
        self.global_cap = FrequencyCap(
            self.settings.frequency_cap_max, self.settings.frequency_cap_per
        )
        # Messages per claim group, half the in-flight limit; groups are handed off a span
        # at a time (engine/sending/record.py hand_off_span).
        self.group_size = group_size(self.settings.dispatch_max_in_flight)
        self.definitions: dict[int, CampaignDefinition] = {}
        self.programs: dict[int, tuple[str, str]] = {}
        self.failures: Counter[int] = Counter()
        self.paused: set[int] = set()
        # An auto-pause that could not be applied: the dispatcher stops, or it would claim and
        # release that run's rows again at once, round and round.
        self.pause_failed = False
        self.summary = DispatchSummary()

    def stop_reason(self) -> str | None:
        if self.stop_event.is_set():
            return "stopped"
        if self.pause_failed:
            return "pause_failed"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "deadline"
        with self.lock:
            if self.remaining is not None and self.remaining <= 0:
                return "max_messages"
        return None

    def take(self, wanted: int) -> int:
        with self.lock:
            if self.remaining is None:
                return wanted
            granted = max(0, min(wanted, self.remaining))
            self.remaining -= granted
            return granted

    def give_back(self, count: int) -> None:
        if count > 0:
            with self.lock:
                if self.remaining is not None:
                    self.remaining += count

    def claim_size(self, channel: str) -> int:
        rate = self.buckets[channel].rate
        return max(1, min(self.settings.dispatch_batch_size, int(rate * CLAIM_SECONDS)))

    def close(self) -> None:
        """Close the shared rate limits' connections (PostgreSQL)."""
        for bucket in self.buckets.values():
            if isinstance(bucket, SharedTokenBucket):
                bucket.close()
        if self.limits_engine is not None:
            self.limits_engine.dispose()

    def report(self, count: int) -> None:
        if self.progress is not None and count:
            self.progress(count)


@contextmanager
def _writing(shared: _Shared) -> Iterator[None]:
    """SQLite: one writing transaction of this dispatcher's threads at a time. SQLite makes a
    writer wait for another (busy_timeout), except a transaction that read before it writes
    while another committed meanwhile: that one fails at once."""
    if not shared.sqlite:
        yield
        return
    with shared.write_lock:
        yield


@contextmanager
def _transaction(shared: _Shared) -> Iterator[Connection]:
    """A writing transaction (SQLite: one of this dispatcher's threads at a time)."""
    with _writing(shared), shared.app.sessions() as session, session.begin():
        yield session.connection()


def _now(shared: _Shared) -> datetime:
    return ensure_utc(shared.app.clock.now())


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _among(column: Any, values: Sequence[Any], postgres: bool, kind: Any = BigInteger) -> Any:
    """``column IN (values)``; on PostgreSQL ``= ANY(array)``: one parameter instead of a
    thousand, which psycopg would otherwise parse out of a new statement text every batch."""
    if postgres:
        return column == any_(literal(list(values), ARRAY(kind)))
    return column.in_(values)


def _housekeeping(shared: _Shared) -> tuple[int, int, int]:
    """Expired leases: rows of a claim never handed off -> queued, the others -> unknown;
    queued messages of cancelled runs -> skipped; claims none of whose rows is ``sending``
    any more -> dropped. Returns (unknown, queued again, skipped).

    On PostgreSQL every lock is taken with SKIP LOCKED, so that two dispatchers starting at
    once never wait for each other (nor deadlock); a row or claim one of them skips is another
    one's to settle, or the next housekeeping's. A lapse skipped that way leaves its rows to the
    ``unknown`` step: the safe side."""
    at = _now(shared)
    with _writing(shared), shared.app.sessions() as session, session.begin():
        postgres = _is_postgres(session)
        # A lease that ran out, or a claim whose dispatcher stopped beating (it died).
        dead = select(DispatchClaim.id).where(DispatchClaim.heartbeat_at < at - HEARTBEAT_GRACE)
        expired = (
            OutboxMessage.status == st.SENDING,
            or_(OutboxMessage.claimed_until < at, OutboxMessage.claim_id.in_(dead)),
        )
        # Claims whose lease ran out before their hand-off will never send (_hand_off refuses
        # a lapsed claim): their rows can go back to the queue.
        lapsing = select(DispatchClaim.id).where(
            DispatchClaim.state == CLAIMED,
            DispatchClaim.id.in_(select(OutboxMessage.claim_id).where(*expired)),
        )
        if postgres:
            lapsing = lapsing.with_for_update(skip_locked=True)
        session.execute(
            update(DispatchClaim)
            .where(DispatchClaim.id.in_(lapsing.scalar_subquery()), DispatchClaim.state == CLAIMED)
            .values(state=LAPSED)
            .execution_options(synchronize_session=False)
        )
        never_sent = (
            select(OutboxMessage.id)
            .join(DispatchClaim, DispatchClaim.id == OutboxMessage.claim_id)
            .where(*expired, DispatchClaim.state == LAPSED)
        )
        if postgres:
            never_sent = never_sent.with_for_update(of=OutboxMessage, skip_locked=True)
        requeued = session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(never_sent.scalar_subquery()))
            .values(
                status=st.QUEUED,
                status_reason="released: its lease ran out before its dispatcher began to send it",
                claimed_by=None,
                claimed_until=None,
                updated_at=at,
            )
            .execution_options(synchronize_session=False)
        )
        # The rest were handed off (or their claim is missing): they may have gone.
        lost_ids = select(OutboxMessage.id).where(*expired)
        if postgres:
            lost_ids = lost_ids.with_for_update(skip_locked=True)
        lost = session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(lost_ids.scalar_subquery()))
            .values(
                status=st.UNKNOWN,
                status_reason="lease expired: the dispatcher stopped while sending; it may "
                "have gone (see `campaign outbox unknown`)",
                updated_at=at,
            )
            .execution_options(synchronize_session=False)
        )
        cancelled = (
            select(OutboxMessage.id)
            .join(CampaignRun, CampaignRun.id == OutboxMessage.run_id)
            .where(OutboxMessage.status == st.QUEUED, CampaignRun.status == "cancelled")
        )
        if postgres:
            cancelled = cancelled.with_for_update(of=OutboxMessage, skip_locked=True)
        skipped = session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(cancelled.scalar_subquery()))
            .values(status=st.SKIPPED, status_reason="run_cancelled", updated_at=at)
            .execution_options(synchronize_session=False)
        )
        # A claim none of whose rows is sending is over: each row left `sending` for good
        # (only a new claim, with a new id, makes a row `sending` again).
        done = select(DispatchClaim.id).where(
            DispatchClaim.id.not_in(
                select(OutboxMessage.claim_id).where(
                    OutboxMessage.status == st.SENDING, OutboxMessage.claim_id.is_not(None)
                )
            )
        )
        if postgres:
            done = done.with_for_update(skip_locked=True)
        session.execute(
            delete(DispatchClaim)
            .where(DispatchClaim.id.in_(done.scalar_subquery()))
            .execution_options(synchronize_session=False)
        )
    return _rowcount(lost), _rowcount(requeued), _rowcount(skipped)


def _beat(shared: _Shared, workers: Sequence[str]) -> None:
    """Move on the heartbeat of the claims that ``workers`` hold (rows still ``sending``)."""
    with _writing(shared), shared.app.sessions() as session, session.begin():
        mine = select(OutboxMessage.claim_id).where(
            OutboxMessage.status == st.SENDING, OutboxMessage.claimed_by.in_(workers)
        )
        session.execute(
            update(DispatchClaim)
            .where(DispatchClaim.id.in_(mine))
            .values(heartbeat_at=_now(shared))
            .execution_options(synchronize_session=False)
        )


def _alive(shared: _Shared) -> None:
    """Tell /metrics this dispatcher lives, and save what it counted (engine/metrics)."""
    shared.app.metrics.beat(DISPATCHER, _now(shared))
    with _writing(shared):
        shared.app.metrics.flush(shared.app.engine)


def _heartbeat(shared: _Shared, workers: Sequence[str], done: threading.Event) -> None:
    """The heartbeat thread of one dispatch() (see HEARTBEAT_SECONDS)."""
    last_housekeeping = time.monotonic()
    _alive(shared)
    while not done.wait(HEARTBEAT_SECONDS):
        _alive(shared)
        try:
            _beat(shared, workers)
            if time.monotonic() - last_housekeeping >= HOUSEKEEPING_SECONDS:
                last_housekeeping = time.monotonic()
                expired, requeued, cancelled = _housekeeping(shared)
                with shared.lock:
                    shared.summary.expired_leases += expired
                    shared.summary.requeued_leases += requeued
                    shared.summary.cancelled_skipped += cancelled
        except Exception:  # the next beat tries again; sending goes on meanwhile
            log.exception("dispatch: heartbeat failed")
    _alive(shared)


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


# PostgreSQL's claim in one statement (one round trip, the claimed rows read once): walk the
# (status, not_before) index in order under SKIP LOCKED, skip the participants in flight
# (%(busy)s, see _claim) and runs that may not send, lease what was found in groups of
# %(group)s in sending order, claims %(claim)s + 0, + 1, ... (their dispatch_claims rows;
# engine/sending/record.py), and return it with what the gate needs of its enrollment and
# participant. The CTE's rows are locked by FOR UPDATE, so the
# UPDATE sees each exactly once.
_PG_CLAIM = """
WITH due AS (
    SELECT o.id, o.not_before FROM outbox_messages AS o
    JOIN campaign_runs AS r ON r.id = o.run_id
    WHERE o.status = 'queued' AND o.not_before <= %(at)s AND o.channel = %(channel)s
      AND r.status = ANY(%(runs)s::text[]) AND NOT (o.participant_id = ANY(%(busy)s::bigint[]))
    ORDER BY o.not_before
    LIMIT %(count)s
    FOR UPDATE OF o SKIP LOCKED
), grouped AS (
    SELECT id, %(claim)s::bigint
        + (row_number() OVER (ORDER BY not_before, id) - 1) / %(group)s AS claim_id
    FROM due
), claimed AS (
    UPDATE outbox_messages AS m
    SET status = 'sending', claimed_by = %(worker)s, claimed_until = %(until)s,
        claim_id = grouped.claim_id, updated_at = %(at)s
    FROM grouped WHERE m.id = grouped.id
    RETURNING m.id, m.uid, m.run_id, m.participant_id, m.campaign, m.channel, m.to_address,
        m.content, m.attempts, m.not_before, m.enrollment_id, m.claim_id
), registered AS (
    INSERT INTO dispatch_claims (id, state, heartbeat_at)
    SELECT g.claim_id, 'claimed', %(at)s FROM (SELECT DISTINCT claim_id FROM claimed) AS g
)
SELECT c.id, c.uid, c.run_id, c.participant_id, c.campaign, c.channel, c.to_address,
    c.content, c.attempts, c.not_before, e.state, p.email, p.phone, p.timezone, p.program_id,
    p.first_name, p.last_name, c.claim_id
FROM claimed AS c
JOIN enrollments AS e ON e.id = c.enrollment_id
JOIN participants AS p ON p.id = c.participant_id
"""


def _claim(shared: _Shared, channel: str, count: int, worker: str) -> list[_Row]:
    """Claim up to ``count`` due messages, none of them to a participant who has a message in
    ``sending`` (claimed by anyone, on any channel): the gate reads the contacts ledger, and a
    message in flight is not in it until its outcome is recorded, so two claims for one person
    would each pass a cap of one. Messages to one person within a batch are counted by
    :func:`_decide`.

    The batch is cut in groups of ``dispatch_max_in_flight`` in sending order, each a claim
    of its own (engine/sending/record.py): a random base id plus the group's number, written
    with the rows and as its own ``dispatch_claims`` row (``claimed``), whose primary key
    keeps it unique among the claims alive: a collision (one in 2**53) fails the claim, which
    then claims nothing."""
    at = _now(shared)
    until = at + shared.settings.dispatch_lease
    claim = new_claim_base()
    group = shared.group_size
    with _writing(shared), shared.app.sessions() as session, session.begin():
        if _is_postgres(session):
            connection = session.connection()
            # Claims one at a time, so that each sees the claims committed before it (READ
            # COMMITTED: each statement's snapshot is taken after this lock). The claim walks
            # the (status, not_before) index in order and stops after `count` rows; without
            # statistics (a fresh or never analysed table) the planner would rather read every
            # queued row of the run and sort them (18 ms a claim in the 20k-message bench,
            # against 3 ms), hence no sorts in this transaction; and no JIT, whose compiling
            # (0.3 s) a disabled sort's cost estimate would otherwise set off.
            connection.exec_driver_sql(
                "SELECT pg_advisory_xact_lock(%s), set_config('enable_sort', 'off', true), "
                "set_config('jit', 'off', true)",
                (CLAIM_LOCK,),
            )
            # The busy people (at most workers x 2 batches of rows, by the (status, not_before)
            # index) as one array parameter: with a correlated NOT EXISTS instead, the
            # 20k-message bench (fresh, unanalysed tables) ran 5x slower.
            busy = sorted(
                {
                    pid
                    for (pid,) in connection.exec_driver_sql(
                        "SELECT participant_id FROM outbox_messages WHERE status = 'sending'"
                    )
                }
            )
            found = connection.exec_driver_sql(
                _PG_CLAIM,
                {
                    "at": at,
                    "until": until,
                    "channel": channel,
                    "runs": list(SENDABLE_RUNS),
                    "busy": busy,
                    "count": count,
                    "worker": worker,
                    "claim": claim,
                    "group": group,
                },
            ).all()
            # In the index's order (sorted here: see the lock above).
            rows = sorted(found, key=lambda r: (r[9], r[0]))
        else:
            rows = list(_claim_sqlite(session, channel, count, worker, at, until, claim, group))
    return [
        _Row(
            id=r[0],
            uid=r[1],
            run_id=r[2],
            participant_id=r[3],
            campaign=r[4],
            channel=r[5],
            to_address=r[6],
            content=dict(r[7] or {}),
            attempts=r[8],
            not_before=ensure_utc(r[9]),
            enrollment_state=r[10],
            email=r[11],
            phone=r[12],
            timezone=r[13],
            program_id=r[14],
            name=" ".join(part for part in (r[15], r[16]) if part) or None,
            claim=r[17],
        )
        for r in rows
    ]


def _claim_sqlite(
    session: Session,
    channel: str,
    count: int,
    worker: str,
    at: datetime,
    until: datetime,
    claim: int,
    group: int,
) -> Sequence[Any]:
    """SQLite's claim: one dispatcher at a time (the file lock), so no SKIP LOCKED."""
    in_flight = aliased(OutboxMessage)
    busy_participant: ColumnElement[bool] = (
        select(in_flight.id)
        .where(
            in_flight.participant_id == OutboxMessage.participant_id,
            in_flight.status == st.SENDING,
        )
        .exists()
    )
    # One statement, which holds the database write lock from its start (a read before it
    # could not then write if another dispatcher thread wrote in between).
    due = (
        select(OutboxMessage.id, OutboxMessage.not_before)
        .join(CampaignRun, CampaignRun.id == OutboxMessage.run_id)
        .where(
            OutboxMessage.status == st.QUEUED,
            OutboxMessage.not_before <= at,
            OutboxMessage.channel == channel,
            CampaignRun.status.in_(SENDABLE_RUNS),
            ~busy_participant,
        )
        # not_before alone: the (status, not_before) index yields that order and the scan
        # stops after `count` rows; a tie-break on id made both databases sort every queued
        # row on each claim (a million of them after a big step).
        .order_by(OutboxMessage.not_before)
        .limit(count)
        .subquery("due")
    )
    # The groups, in sending order (not_before, id) among the rows found.
    position = func.row_number().over(order_by=(due.c.not_before, due.c.id)) - 1
    grouped = select(
        due.c.id, (literal(claim, BigInteger) + position // group).label("claim_id")
    ).subquery("grouped")
    claims = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == grouped.c.id)
        .values(
            status=st.SENDING,
            claimed_by=worker,
            claimed_until=until,
            claim_id=grouped.c.claim_id,
            updated_at=at,
        )
        .returning(OutboxMessage.id, OutboxMessage.claim_id)
        .execution_options(synchronize_session=False)
    ).all()
    if not claims:
        return []
    ids = [id_ for id_, _ in claims]
    session.execute(
        insert(DispatchClaim),
        [
            {"id": group_id, "state": CLAIMED, "heartbeat_at": at}
            for group_id in sorted({g for _, g in claims if g is not None})
        ],
    )
    return session.execute(
        select(
            OutboxMessage.id,
            OutboxMessage.uid,
            OutboxMessage.run_id,
            OutboxMessage.participant_id,
            OutboxMessage.campaign,
            OutboxMessage.channel,
            OutboxMessage.to_address,
            OutboxMessage.content,
            OutboxMessage.attempts,
            OutboxMessage.not_before,
            Enrollment.state,
            Participant.email,
            Participant.phone,
            Participant.timezone,
            Participant.program_id,
            Participant.first_name,
            Participant.last_name,
            OutboxMessage.claim_id,
        )
        .join(Enrollment, Enrollment.id == OutboxMessage.enrollment_id)
        .join(Participant, Participant.id == OutboxMessage.participant_id)
        .where(OutboxMessage.id.in_(ids))
        .order_by(OutboxMessage.not_before, OutboxMessage.id)
    ).all()


def _definition(shared: _Shared, session: Session, run_id: int) -> CampaignDefinition:
    with shared.lock:
        cached = shared.definitions.get(run_id)
    if cached is not None:
        return cached
    source = session.scalar(select(CampaignRun.definition_source).where(CampaignRun.id == run_id))
    definition = parse_definition(source or "", f"run {run_id} (stored definition)").definition
    with shared.lock:
        shared.definitions[run_id] = definition
    return definition


def _program(shared: _Shared, session: Session, program_id: int) -> tuple[str, str]:
    with shared.lock:
        cached = shared.programs.get(program_id)
    if cached is not None:
        return cached
    row = session.execute(
        select(Program.timezone, Program.region).where(Program.id == program_id)
    ).one()
    value = (str(row[0]), str(row[1]))
    with shared.lock:
        shared.programs[program_id] = value
    return value


def _address_hash(channel: str, address: str) -> str:
    return email_hash(address) if channel == "email" else hash_normalised(address)


@dataclass
class _Facts:
    """What the gate reads from the database for one claimed batch (see :func:`_load_facts`)."""

    consents: dict[int, str]
    suppressed: dict[str, set[str]]  # address -> the channels its suppressions cover
    contacts: dict[int, list[datetime]]
    definitions: dict[int, CampaignDefinition]
    programs: dict[int, tuple[str, str]]
    digests: dict[str, str] = field(default_factory=dict)  # address -> its suppression hash
    # engine.sending.deadlines: id -> skip reason (expired, no_longer_eligible) or wait-until
    # instant
    refused: dict[int, str | datetime] = field(default_factory=dict)
    read_at: float = field(default_factory=time.monotonic)


def _load_facts(shared: _Shared, rows: Sequence[_Row], channel: str) -> _Facts:
    """Read what the gate needs about a claimed batch: consents, suppressions (by address
    hash), the contacts ledger within the longest cap (unknown messages included: see
    engine/sending/contact_ledger.py), run definitions and program zones.

    Read on the database thread while the previous batch is being sent; the decisions are
    taken from these facts by :func:`_decide` just before this batch goes. Its members have
    no message in flight elsewhere (the claim skips them), so the ledger read here already
    holds every earlier send of theirs."""
    at = _now(shared)
    with shared.app.sessions() as session, session.begin():
        postgres = _is_postgres(session)
        pids = sorted({row.participant_id for row in rows})
        consents: dict[int, str] = dict(
            session.execute(
                select(Consent.participant_id, Consent.status).where(
                    _among(Consent.participant_id, pids, postgres), Consent.channel == channel
                )
            ).all()
        )
        digests = {
            address: _address_hash(channel, address)
            for row in rows
            if (address := row.email if channel == "email" else row.phone)
        }
        by_digest: dict[str, set[str]] = defaultdict(set)
        if digests:
            for digest, on in session.execute(
                select(Suppression.address_hash, Suppression.channel).where(
                    _among(
                        Suppression.address_hash, sorted(set(digests.values())), postgres, String
                    ),
                    Suppression.channel.in_((channel, "all")),
                )
            ).all():
                by_digest[digest].add(on)
        suppressed = {
            address: by_digest[digest] for address, digest in digests.items() if digest in by_digest
        }
        definitions: dict[int, CampaignDefinition] = {}
        for run_id in sorted({row.run_id for row in rows}):
            try:
                definitions[run_id] = _definition(shared, session, run_id)
            except (EngineError, ValueError) as exc:
                log.error("run %s: stored definition does not load: %s", run_id, exc)
        programs = {
            program_id: _program(shared, session, program_id)
            for program_id in {row.program_id for row in rows}
        }
        # The longest cap any of these runs counts (decided later than `at`: a later window
        # only drops contacts from the front).
        lookback = max(
            [shared.global_cap.per]
            + [d.frequency_cap.per for d in definitions.values() if d.frequency_cap]
        )
        # The ledger and the members' unknown messages (they may have gone: see
        # engine/sending/contact_ledger.py).
        contacts: dict[int, list[datetime]] = defaultdict(list)
        for pid, when in session.execute(
            contact_times(lambda column: _among(column, pids, postgres), at - lookback)
        ).all():
            contacts[pid].append(when)
        refused = send_time_refusals(session, rows, at, definitions)
    return _Facts(consents, suppressed, contacts, definitions, programs, digests, refused=refused)


def _suppressed_among(shared: _Shared, channel: str, digests: Sequence[str]) -> set[str]:
    """Those of ``digests`` (address hashes) suppressed on ``channel`` now: one indexed read
    (the unique (channel, address_hash) index), made on the sending thread between requests."""
    if not digests:
        return set()
    with shared.app.sessions() as session:
        postgres = _is_postgres(session)
        return set(
            session.scalars(
                select(Suppression.address_hash).where(
                    _among(Suppression.address_hash, sorted(set(digests)), postgres, String),
                    Suppression.channel.in_((channel, "all")),
                )
            )
        )


def _decide(
    shared: _Shared, rows: Sequence[_Row], facts: _Facts, channel: str
) -> tuple[list[tuple[_Row, str]], list[_Outcome]]:
    """The gate, at the instant the batch is about to be sent: (messages to send now with
    their address, outcomes of the others). Pure: no database (see :func:`_load_facts`)."""
    at = _now(shared)
    ready: list[tuple[_Row, str]] = []
    outcomes: list[_Outcome] = []
    contacts = facts.contacts
    for row in rows:
        definition = facts.definitions.get(row.run_id)
        if definition is None:
            outcomes.append(_Outcome(row, st.FAILED, "definition_error", error="stored definition"))
            continue
        if row.enrollment_state == "converted":
            outcomes.append(_Outcome(row, st.SKIPPED, "converted"))
            continue
        late = facts.refused.get(row.id)
        if late is not None:
            outcomes.append(
                _Outcome(row, st.SKIPPED, late)
                if isinstance(late, str)
                else _Outcome(row, st.QUEUED, "waiting: spacing", max(late, at))
            )
            continue
        address = row.email if channel == "email" else row.phone
        zone, region = facts.programs[row.program_id]
        try:
            zones = candidate_zones(
                participant_zone=row.timezone,
                phone=row.phone,
                program_zone=zone,
                region=region,
            ).zones
        except ValueError:
            zones = ()
        person = ParticipantFacts(
            address=address,
            consent=facts.consents.get(row.participant_id),  # type: ignore[arg-type]
            zones=zones,
            suppressed_channels=facts.suppressed.get(address or "", set()),
            contact_times=tuple(contacts[row.participant_id]),
        )
        answer = gate_decision(
            channel, person, at, definition=definition, global_cap=shared.global_cap
        )
        if isinstance(answer, Skip):
            outcomes.append(_Outcome(row, st.SKIPPED, answer.reason))
        elif isinstance(answer, WaitUntil):
            outcomes.append(_Outcome(row, st.QUEUED, f"waiting: {answer.reason}", answer.until))
        else:
            assert address is not None  # the gate refuses a missing address
            ready.append((row, address))
            # A second message to the same person in this batch sees this one.
            contacts[row.participant_id].append(at)
    return ready, outcomes


def _trip(shared: _Shared, channel: Channel, kind: str, error: RetryableError) -> Circuit:
    """Open (or keep open) the circuit of ``kind``'s provider and sender after ``error``."""
    with _writing(shared), shared.app.sessions() as session, session.begin():
        circuit = trip(
            session,
            shared.circuit_keys[kind],
            channel=kind,
            provider=channel.name,
            at=_now(shared),
            error=str(error),
            base=shared.settings.dispatch_retry_delay,
            retry_after=error.retry_after,
        )
    log.warning("%s", circuit.describe(), extra={"channel": kind, "provider": channel.name})
    return circuit


def _close_circuit(shared: _Shared, kind: str) -> None:
    """Close ``kind``'s circuit (a request succeeded), counting an attempt for the message
    that alone failed while it was open, if any (engine/sending/circuits.py ``strike_suspects``)."""
    with _writing(shared), shared.app.sessions() as session, session.begin():
        circuit = circuit_of(session, shared.circuit_keys[kind])
        if close_circuit(session, shared.circuit_keys[kind]):
            log.warning(
                "%s: the provider answers again; sending resumes", kind, extra={"channel": kind}
            )
        if circuit is not None:
            strike_suspects(
                session, circuit, _now(shared), max_attempts=shared.settings.dispatch_max_attempts
            )


def _record(shared: _Shared, outcomes: Sequence[_Outcome], provider: str) -> None:
    """Write ``outcomes`` now, in a transaction of their own (engine/sending/record.py)."""
    if outcomes:
        with _transaction(shared) as connection:
            write_outcomes(connection, outcomes, provider, _now(shared))


def _pause(shared: _Shared, run_id: int, reason: str) -> None:
    from engine.runs import pause_run

    with shared.lock:
        if run_id in shared.paused:
            return
        shared.paused.add(run_id)
    try:
        with _writing(shared), shared.app.sessions() as session, session.begin():
            pause_run(session, run_id, at=_now(shared), reason=reason[:1000])
        log.warning("run %s paused: %s", run_id, reason, extra={"run_id": run_id})
        metrics.auto_paused(shared.app.metrics, "dispatcher")
    except InputError as exc:
        with shared.app.sessions() as session:
            status = session.scalar(select(CampaignRun.status).where(CampaignRun.id == run_id))
        if status == "cancelled":
            return  # cancelled meanwhile: its queued messages are skipped
        if status != "paused":  # (paused meanwhile is what we wanted)
            log.error("run %s could not be paused (%s): %s", run_id, reason, exc)
            with shared.lock:
                shared.summary.errors.append(
                    f"run {run_id} could not be paused ({reason}): {exc}; the dispatcher "
                    "stopped: pause or cancel the run, or fix the provider, then dispatch again"
                )
                shared.pause_failed = True
            return
    with shared.lock:
        if run_id not in shared.summary.paused_runs:
            shared.summary.paused_runs.append(run_id)


def _suppress(shared: _Shared, channel: str, address: str, error: RecipientError) -> None:
    reason = "opt_out" if error.suppress else "invalid"
    try:
        with _writing(shared), shared.app.sessions() as session, session.begin():
            add_suppression(
                session,
                address,
                channel,
                reason,
                "provider",
                note=str(error)[:500],
                at=_now(shared),
                default_region=shared.settings.default_region,
            )
    except EngineError as exc:
        log.warning("could not suppress %s on %s: %s", address, channel, exc)


# status_reason of an attempt that failed on the provider's side (see _counts_as_failure).
FAILURE_REASONS = ("retry", "too_many_attempts", "no_answer", "rejected", "unexpected_error")


def _failure_streak(shared: _Shared, run_id: int) -> int:
    """Failed attempts of the run since its last message went, as recorded by earlier
    dispatches: a retried row's ``attempts`` are its failures (it would be sent otherwise)."""
    with shared.app.sessions() as session:
        last_sent = session.scalar(
            select(func.max(OutboxMessage.sent_at)).where(OutboxMessage.run_id == run_id)
        )
        query = select(func.coalesce(func.sum(OutboxMessage.attempts), 0)).where(
            OutboxMessage.run_id == run_id,
            OutboxMessage.sent_at.is_(None),
            OutboxMessage.status_reason.in_(FAILURE_REASONS),
        )
        if last_sent is not None:
            query = query.where(OutboxMessage.updated_at > last_sent)
        return int(session.scalar(query) or 0)


def _counts_as_failure(error: ChannelError) -> bool:
    """A provider failure for the auto-pause count. Not: a refusal of the message or the
    recipient (the provider works), an outage (its circuit waits it out: no message is spent
    on it), a stop (it pauses the run itself)."""
    return not isinstance(
        error,
        RecipientError | MessageError | CampaignStopError | DuplicateSendError | RetryableError,
    )


class _Batch:
    """Sends one claimed batch of one channel and turns every row into an outcome."""

    def __init__(
        self,
        shared: _Shared,
        worker: str,
        channel: str,
        sender: InFlight[_Row],
        recorder: Recorder,
        pace: SendRate,
    ) -> None:
        self.shared = shared
        self.pace = pace
        self.recorder = recorder
        self.worker = worker
        self.channel_kind = channel
        self.channel = shared.channels[channel]
        self.sender = sender
        self.bucket = shared.buckets[channel]
        self.outcomes: list[_Outcome] = []  # all of them (each also given to the recorder)
        self.decided: set[int] = set()  # ids of the rows with an outcome
        # The hand-off groups (claims) of this batch handed off, and those found lapsed.
        self.handed: set[int] = set()
        self.lapsed: set[int] = set()
        # Hand-offs written ahead, not yet waited for (each claim of a span: its write).
        self.handing: dict[int, Future[tuple[int, frozenset[int]]]] = {}
        # The claims of the single sends in sending order (a span is a run of them).
        self.claims: list[int] = []
        self.claim_position: dict[int, int] = {}
        self.stopped: str | None = None
        self.held_back: set[int] = set()  # runs paused or stopped during this batch
        self.release_rest_at: datetime | None = None
        # The channel's circuit was open (its wait is over): the first request goes alone,
        # a probe, and the first success closes the circuit.
        self.probing = False
        self.circuit_open = False
        # The suppression re-check (SUPPRESSION_RECHECK_SECONDS): the batch's address hashes,
        # when they were last read, and those suppressed since.
        self.digests: Mapping[str, str] = {}
        self.checked_at = time.monotonic()
        self.newly_suppressed: set[str] = set()

    def run(self, ready: list[tuple[_Row, str]]) -> None:
        try:
            self._run(ready)
        finally:
            # Broken off (an error): what never started goes back to the queue.
            for row, _ in ready:
                if row.id not in self.decided:
                    self._release(row)

    def _run(self, ready: list[tuple[_Row, str]]) -> None:
        singles: list[tuple[_Row, Outbound]] = []
        templated: list[tuple[_Row, OutboundEmail]] = []
        for row, address in ready:
            try:
                message = build_outbound(
                    uid=row.uid,
                    channel=row.channel,
                    to=address,
                    content=row.content,
                    settings=self.shared.settings,
                    campaign=row.campaign,
                    to_name=row.name,
                )
            except (ValueError, EngineError) as exc:
                self._outcome(
                    _Outcome(row, st.FAILED, "bad_content", attempts=row.attempts, error=str(exc))
                )
                continue
            if isinstance(message, OutboundEmail) and message.is_template:
                templated.append((row, message))
            else:
                singles.append((row, message))
        addresses = dict((row.id, address) for row, address in ready)
        single_addresses = [addresses[row.id] for row, _ in singles]
        # Where the group after each message's own begins (its hand-off may be written ahead).
        next_group = [len(singles)] * len(singles)
        for index in range(len(singles) - 2, -1, -1):
            same = singles[index][0].claim == singles[index + 1][0].claim
            next_group[index] = next_group[index + 1] if same else index + 1
        self.claims = list(dict.fromkeys(row.claim for row, _ in singles))
        self.claim_position = {claim: n for n, claim in enumerate(self.claims)}
        sender = self.sender
        try:
            for index, (row, message) in enumerate(singles):
                # Room first (settling what came back: a 429 holds the rest back), then the
                # rate's slot, so that the request starts as the slot comes.
                self._settle(sender.room(), addresses)
                if not self._may_send(row):
                    continue
                # Suppressions are read again before the slot, not between the slot and the
                # request (a read there would bunch requests up against the next slot); and
                # after the slot only when waiting for it took long (at 1 SMS/s, a second).
                if self._suppressed_since(addresses[row.id], single_addresses, index):
                    self._outcome(_Outcome(row, st.SKIPPED, "suppressed"))
                    continue
                # Its group's hand-off (with the outcomes so far) before its first request.
                if not self._handed_off([row]):
                    self._release(row)
                    continue
                waited = self.bucket.acquire(
                    meanwhile=lambda wait: self._meanwhile(wait, addresses)
                )
                metrics.rate_limit_wait(self.shared.app.metrics, self.channel_kind, waited)
                # (What came back meanwhile may hold the rest back: a 429, a 401.)
                if not self._may_send(row):
                    continue
                if self._suppressed_since(addresses[row.id], single_addresses, index):
                    self._outcome(_Outcome(row, st.SKIPPED, "suppressed"))
                    continue
                sender.start(row, self.channel.send, message)
                self.pace.started()
                if self.probing:  # the probe's answer first: is the provider back?
                    self._settle(sender.drain(), addresses)
                    self.probing = False
                self._hand_off_ahead(singles, index, next_group)
                self.recorder.flush_if_due()
        finally:
            # Even when the loop broke off: what went out is recorded.
            self._settle(sender.drain(), addresses)
        if templated:
            self._send_templated(templated, addresses)

    def _meanwhile(self, wait: float, addresses: Mapping[int, str]) -> None:
        """While waiting ``wait`` seconds for the rate's slot (at 1 SMS/s, most of a second):
        settle the answers that come back, and write them at least every FLUSH_SECONDS."""
        until = time.monotonic() + wait
        while (left := until - time.monotonic()) > 0 and self.sender.busy:
            self._settle(self.sender.within(min(left, FLUSH_SECONDS)), addresses)
            self.recorder.flush_if_due()

    def _settle(self, done: Iterator[Done[_Row]], addresses: Mapping[int, str]) -> None:
        """The outcomes of sends that came back (see engine/sending/in_flight.py)."""
        for row, result, error in done:
            if error is None:
                self._sent(row, result, addresses[row.id])
            elif isinstance(error, ChannelError):
                self._failed(row, addresses[row.id], error)
            else:  # a bug or an unclassified transport error: it may have gone
                log.error(
                    "message %s: unexpected error while sending",
                    row.uid,
                    exc_info=error,
                    extra={"message_id": row.uid, "run_id": row.run_id, "channel": row.channel},
                )
                self._outcome(_Outcome(row, st.UNKNOWN, "unexpected_error", error=repr(error)))

    def _send_templated(
        self, templated: list[tuple[_Row, OutboundEmail]], addresses: Mapping[int, str]
    ) -> None:
        send_batch = getattr(self.channel, "send_batch", None)
        size = int(getattr(self.channel, "batch_size", 1000))
        for start in range(0, len(templated), size):
            chunk = [(row, m) for row, m in templated[start : start + size] if self._may_send(row)]
            if not chunk:
                continue
            waited = self.bucket.acquire(len(chunk))
            metrics.rate_limit_wait(self.shared.app.metrics, self.channel_kind, waited)
            remaining = [addresses[row.id] for row, _ in chunk]
            kept = []
            for row, message in chunk:
                if self._suppressed_since(addresses[row.id], remaining, 0):
                    self._outcome(_Outcome(row, st.SKIPPED, "suppressed"))
                else:
                    kept.append((row, message))
            chunk = kept
            if not chunk:
                continue
            if self._stopping():
                for row, _ in chunk:
                    self._release(row)
                continue
            # One request for the whole chunk: every group in it is handed off first.
            if not self._handed_off([row for row, _ in chunk]):
                for row, _ in chunk:
                    if row.claim in self.lapsed:
                        self._release(row)
                chunk = [(row, m) for row, m in chunk if row.claim not in self.lapsed]
                if not chunk:
                    continue
            if send_batch is None:
                for row, message in chunk:
                    try:
                        self._sent(row, self.channel.send(message), addresses[row.id])
                    except ChannelError as exc:
                        self._failed(row, addresses[row.id], exc)
                continue
            try:
                results = send_batch([m for _, m in chunk])
            except ChannelError as exc:
                results = {m.message_id: exc for _, m in chunk}
            for row, message in chunk:
                outcome = results.get(message.message_id)
                if isinstance(outcome, SendResult):
                    self._sent(row, outcome, addresses[row.id])
                elif isinstance(outcome, ChannelError):
                    self._failed(row, addresses[row.id], outcome)
                else:
                    self._outcome(_Outcome(row, st.UNKNOWN, "no_outcome_from_batch"))

    # -- decisions about the rest of the batch

    def _hand_off_ahead(
        self, singles: Sequence[tuple[_Row, Outbound]], index: int, next_group: Sequence[int]
    ) -> None:
        """Write the next span's hand-off in the background once it is at most
        :func:`hand_off_lead` messages ahead (engine/sending/record.py): the sending need
        not wait for the write, and what a kill leaves unknown stays within
        :func:`engine.sending.record.unknown_bound`. ``next_group``: where the group after
        each message's own begins."""
        limit = self.sender.limit
        span = hand_off_span(limit, self.pace.rate)
        lead = hand_off_lead(limit, self.sender.window, span)
        start = next_group[index] if index < len(next_group) else len(singles)
        # The first group after this message's not yet handed off (nor asked for).
        while start < len(singles) and start - index <= lead:
            claim = singles[start][0].claim
            if claim in self.lapsed:
                return
            if claim not in self.handed and claim not in self.handing:
                claims = self._span(claim, span)
                self.handing.update(dict.fromkeys(claims, self.recorder.hand_off_later(claims)))
                return
            start = next_group[start]

    def _span(self, claim: int, span: int) -> list[int]:
        """The claims of the single sends from ``claim`` on that make up ``span`` messages
        (whole groups), those not handed off or asked for yet; ``claim`` alone when it is
        not a single send's."""
        position = self.claim_position.get(claim)
        if position is None:
            return [claim]
        claims: list[int] = []
        for other in self.claims[position:]:
            if other in self.handed or other in self.lapsed or other in self.handing:
                break
            claims.append(other)
            if len(claims) * self.shared.group_size >= span:
                break
        return claims

    def _handed_off(self, rows: Sequence[_Row]) -> bool:
        """Hand off the groups of ``rows`` not handed off yet (engine/sending/record.py),
        each committed with the outcomes known so far before its first request. False when
        one of them lapsed (its lease ran out first: housekeeping put it back in the queue,
        and none of it may be sent by this dispatcher)."""
        wanted = [
            claim
            for claim in dict.fromkeys(row.claim for row in rows)
            if claim not in self.handed and claim not in self.lapsed
        ]
        missing = [claim for claim in wanted if claim not in self.handing]
        if len(rows) == 1 and missing:  # a single send: its span
            missing = self._span(missing[0], hand_off_span(self.sender.limit, self.pace.rate))
        if missing:
            self.handing.update(dict.fromkeys(missing, self.recorder.hand_off_later(missing)))
        for claim in wanted:
            job = self.handing.get(claim)
            if job is None:  # settled with an earlier claim's write
                continue
            made = self.recorder.handed(job)
            for other in [c for c, j in self.handing.items() if j is job]:
                del self.handing[other]
                if other in made:
                    self.handed.add(other)
                    continue
                self.lapsed.add(other)
                log.warning(
                    "%s: the lease of a group of messages ran out before it was handed off; "
                    "it went back to the queue and is not sent by this dispatcher",
                    self.worker,
                )
        return not any(row.claim in self.lapsed for row in rows)

    def _suppressed_since(self, address: str, batch: Sequence[str], start: int) -> bool:
        """Whether ``address`` was suppressed since the gate's facts were read: read again
        for the addresses of ``batch`` from ``start`` on (those not sent yet) when the last
        read is older than SUPPRESSION_RECHECK_SECONDS."""
        if time.monotonic() - self.checked_at >= SUPPRESSION_RECHECK_SECONDS and self.digests:
            wanted = [d for a in batch[start:] if (d := self.digests.get(a))]
            self.newly_suppressed |= _suppressed_among(self.shared, self.channel_kind, wanted)
            self.checked_at = time.monotonic()
        if not self.newly_suppressed:
            return False
        return self.digests.get(address) in self.newly_suppressed

    def _stopping(self) -> bool:
        if self.stopped is None:
            self.stopped = self.shared.stop_reason()
            if self.stopped == "max_messages":
                self.stopped = None  # the claim was already sized to the quota
        return self.stopped is not None

    def _may_send(self, row: _Row) -> bool:
        if self._stopping():
            self._release(row)
            return False
        if row.run_id in self.held_back or row.run_id in self.shared.paused:
            # (A batch claimed ahead may hold messages of a run paused since.)
            self._release(row)
            return False
        if self.release_rest_at is not None:
            self._release(row, self.release_rest_at)
            return False
        return True

    def _release(self, row: _Row, not_before: datetime | None = None) -> None:
        self._outcome(
            _Outcome(row, st.QUEUED, "released", not_before or row.not_before, row.attempts)
        )

    # -- outcomes

    def _outcome(self, outcome: _Outcome) -> None:
        self.outcomes.append(outcome)
        self.decided.add(outcome.row.id)
        self.recorder.add(outcome, self.channel.name)

    def _sent(self, row: _Row, result: SendResult, address: str) -> None:
        with self.shared.lock:
            self.shared.failures[row.run_id] = 0
        self._outcome(_Outcome(row, st.SENT, result=result, address=address))
        if self.circuit_open:
            self.circuit_open = False
            # The failures of this outage written first: each may be the cause.
            self.recorder.wait()
            _close_circuit(self.shared, self.channel_kind)

    def _failed(self, row: _Row, address: str, error: ChannelError) -> None:
        shared = self.shared
        attempts = row.attempts + 1
        text = str(error)[:2000]
        if isinstance(error, DuplicateSendError):
            # The sink already holds this message's file: it went, earlier.
            self._outcome(_Outcome(row, st.SENT, result=None, address=address, error=text))
            return
        metrics.provider_error(shared.app.metrics, self.channel_kind, error)
        if isinstance(error, CampaignStopError):
            self._outcome(_Outcome(row, st.QUEUED, "run_paused", None, row.attempts, text))
            self.held_back.add(row.run_id)
            _pause(shared, row.run_id, f"provider refused the campaign: {text}")
        elif isinstance(error, RecipientError):
            self._outcome(_Outcome(row, st.FAILED, f"recipient_{error.code}", None, attempts, text))
            if error.suppress or error.invalid_address:
                _suppress(shared, self.channel_kind, address, error)
        elif isinstance(error, UnknownOutcomeError):
            self._outcome(_Outcome(row, st.UNKNOWN, "no_answer", None, attempts, text))
        elif isinstance(error, RetryableError):
            # The provider's trouble, not the message's: it goes back as it was (no attempt
            # spent), and the channel waits for the provider (its circuit opens), the rest of
            # this batch too. Requests of the same moment that fail too take the same wait.
            # A request that failed (not a 429) goes one retry delay after the others, so
            # that the next probe is another message: one the provider fails on alone (a
            # poison message) is counted, and in the end failed, when another message closes
            # the circuit (engine/sending/circuits.py strike_suspects).
            if self.release_rest_at is None:
                circuit = _trip(shared, self.channel, self.channel_kind, error)
                self.release_rest_at = circuit.retry_at
                self.circuit_open = True
            if error.status == 429:
                why, until = "throttled", self.release_rest_at
            else:
                why = PROVIDER_UNAVAILABLE
                until = self.release_rest_at + shared.settings.dispatch_retry_delay
            self._outcome(_Outcome(row, st.QUEUED, why, until, row.attempts, text))
        elif isinstance(error, MessageError):
            self._outcome(_Outcome(row, st.FAILED, "message_refused", None, attempts, text))
        else:
            self._outcome(_Outcome(row, st.FAILED, "rejected", None, attempts, text))
        if _counts_as_failure(error):
            with shared.lock:
                known = row.run_id in shared.failures
            # The streak may have begun in an earlier dispatch (an earlier tick): start there.
            before = 0 if known else _failure_streak(shared, row.run_id)
            with shared.lock:
                shared.failures[row.run_id] = shared.failures.get(row.run_id, before) + 1
                count = shared.failures[row.run_id]
            if count >= shared.settings.dispatch_pause_after_failures:
                self.held_back.add(row.run_id)
                _pause(
                    shared,
                    row.run_id,
                    f"{count} consecutive provider failures; last: {text}",
                )


def _tally(summary: DispatchSummary, outcomes: Sequence[_Outcome]) -> None:
    for outcome in outcomes:
        if outcome.status == st.SENT:
            summary.sent += 1
        elif outcome.status == st.SKIPPED:
            reason = outcome.reason or "skipped"
            summary.skipped[reason] = summary.skipped.get(reason, 0) + 1
        elif outcome.status == st.FAILED:
            summary.failed += 1
        elif outcome.status == st.UNKNOWN:
            summary.unknown += 1
        elif outcome.reason in ("retry", "throttled", "provider_unavailable"):
            summary.retried += 1
        elif outcome.reason in ("released", "run_paused"):
            summary.released += 1
        else:
            summary.waiting += 1


@dataclass
class _Claimed:
    """A batch claimed by the database thread, with the facts its gate needs."""

    kind: str
    rows: list[_Row]
    facts: _Facts | None
    overlapped: bool  # claimed while the worker's previous batch was still in flight
    read_at: float = field(default_factory=time.monotonic)  # when ``facts`` were read
    # The channel's circuit, open but due for a probe (None: closed).
    circuit: Circuit | None = None


def _claim_batch(shared: _Shared, worker: str, kind: str, overlapped: bool) -> _Claimed | None:
    """Claim the next batch of ``kind`` and read its gate's facts (the claiming thread's job).
    None when stopping or when the ``max_messages`` quota is used up."""
    if shared.stop_reason() is not None:
        return None
    with shared.app.sessions() as session:
        circuit = circuit_of(session, shared.circuit_keys[kind])
    if circuit is not None and circuit.retry_at > _now(shared):
        return _Claimed(kind, [], None, overlapped=False)  # waiting for the provider
    quota = shared.take(shared.claim_size(kind))
    if quota == 0:
        return None
    rows = _claim(shared, kind, quota, worker)
    shared.give_back(quota - len(rows))
    if not rows:
        return _Claimed(kind, [], None, overlapped)
    try:
        facts = _load_facts(shared, rows, kind)
    except BaseException:
        # Nothing of this batch went out: give it back rather than leave it claimed until its
        # lease runs out.
        shared.give_back(len(rows))
        _record(shared, released(rows), "")
        raise
    return _Claimed(kind, rows, facts, overlapped, circuit=circuit)


def _halted_runs(shared: _Shared, run_ids: set[int]) -> set[int]:
    """Those of ``run_ids`` that may not send any more (paused, cancelled...)."""
    with shared.app.sessions() as session:
        sendable = set(
            session.scalars(
                select(CampaignRun.id).where(
                    CampaignRun.id.in_(sorted(run_ids)), CampaignRun.status.in_(SENDABLE_RUNS)
                )
            )
        )
    return run_ids - sendable


class _Pipeline:
    """One worker's three threads: the worker's own sends the batches; a claiming thread
    claims the next batch (and reads its gate's facts) while the current one is being sent;
    a writing thread (engine/sending/record.py) writes the outcomes as they come and hands
    off each group of messages right before its first request. The database's time overlaps
    the HTTP requests instead of adding to them.

    Why the rules still hold: a claim skips members with a message in ``sending``, and a
    message stays ``sending`` until its outcome (with its row in the contacts ledger) is
    written; so a batch claimed while others are in flight or unwritten holds none of their
    members, and the ledger read for a claimed member is complete. The gate's decisions are
    taken on the sending thread just before the batch goes (:func:`_decide`). Only a claim
    made with nothing in flight or unwritten can tell that nothing is due. A message may go
    only once its group has been handed off, just before the group's first request."""

    def __init__(self, shared: _Shared, worker: str, index: int) -> None:
        self.shared = shared
        self.worker = worker
        self.index = index
        self.summary = DispatchSummary()
        self.kinds = [kind for kind in CHANNEL_ORDER if kind in shared.channels]
        self.claimer = ThreadPoolExecutor(1, thread_name_prefix=f"dispatch-claim-{index}")
        self.recorder = Recorder(
            lambda: _transaction(shared),
            lambda: _now(shared),
            shared.report,
            name=f"dispatch-write-{index}",
        )
        # Kept across batches: how fast the provider answers, and the send rate, carry over.
        self.pace = SendRate()
        self.sender: InFlight[_Row] = InFlight(
            shared.settings.dispatch_max_in_flight, name=f"dispatch-send-{index}"
        )
        self.claiming: Future[_Claimed | None] | None = None

    def _claim_next(self, kind: str, *, overlapped: bool) -> None:
        self.claiming = self.claimer.submit(
            _claim_batch, self.shared, self.worker, kind, overlapped
        )

    def _claimed(self) -> _Claimed | None:
        claiming, self.claiming = self.claiming, None
        assert claiming is not None
        return claiming.result()

    def run(self) -> DispatchSummary:
        try:
            self._loop()
        except BaseException:
            self._finish(strict=False)
            raise
        self._finish(strict=True)
        return self.summary

    def _loop(self) -> None:
        shared, summary = self.shared, self.summary
        if not self.kinds:
            summary.stopped_by = shared.stop_reason() or "drained"
            return
        position = 0
        quiet = 0  # claims in a row that found nothing with nothing in flight or unwritten
        while True:
            if self.claiming is None:
                reason = shared.stop_reason()
                if reason is not None:
                    summary.stopped_by = reason
                    return
                self._claim_next(self.kinds[position], overlapped=self.recorder.busy)
            claimed = self._claimed()
            if claimed is None:  # stopping or out of quota: the loop's top says which
                continue
            position = (position + 1) % len(self.kinds)
            if not claimed.rows:
                if claimed.overlapped:
                    # It skipped the members of batches in flight: ask again once written.
                    self.recorder.wait()
                    continue
                quiet += 1
                if quiet < len(self.kinds):
                    continue
                if not shared.follow:
                    summary.stopped_by = shared.stop_reason() or "drained"
                    return
                if shared.stop_event.wait(POLL_SECONDS):
                    continue
                if self.index == 0:
                    _housekeeping(shared)
                quiet = 0
                continue
            quiet = 0
            summary.claimed += len(claimed.rows)
            self._send(claimed, self.kinds[position])

    def _send(self, claimed: _Claimed, next_kind: str) -> None:
        """Gate (now) and send one claimed batch, each group handed off right before its
        first request, its outcomes written as they come. The next claim, of ``next_kind``,
        runs while it is sent."""
        batch = _Batch(
            self.shared, self.worker, claimed.kind, self.sender, self.recorder, self.pace
        )
        batch.probing = batch.circuit_open = claimed.circuit is not None
        assert claimed.facts is not None
        try:
            # Claimed ahead: a run paused or cancelled meanwhile keeps its messages queued.
            halted = _halted_runs(self.shared, {row.run_id for row in claimed.rows})
            rows = [row for row in claimed.rows if row.run_id not in halted]
            facts = claimed.facts
            if rows and time.monotonic() - claimed.read_at > FACTS_MAX_AGE_SECONDS:
                facts = _load_facts(self.shared, rows, claimed.kind)
            ready, outcomes = _decide(self.shared, rows, facts, claimed.kind)
            batch.digests, batch.checked_at = facts.digests, facts.read_at
        except BaseException:
            for outcome in released(claimed.rows):
                batch._outcome(outcome)
            self._hand_over(batch)
            raise
        for outcome in released([r for r in claimed.rows if r.run_id in halted]) + outcomes:
            batch._outcome(outcome)
        # The next claim runs while this batch is sent (and its outcomes are written).
        if self.shared.stop_reason() is None:
            self._claim_next(next_kind, overlapped=True)
        try:
            batch.run(ready)
        finally:
            # Even when sending broke off: what did happen is written.
            self._hand_over(batch)

    def _hand_over(self, batch: _Batch) -> None:
        _tally(self.summary, batch.outcomes)
        sent = sum(1 for outcome in batch.outcomes if outcome.status == st.SENT)
        metrics.sent(self.shared.app.metrics, batch.channel_kind, sent)
        self.shared.give_back(sum(1 for o in batch.outcomes if o.reason == "released"))
        self.recorder.flush()

    def _finish(self, *, strict: bool) -> None:
        """Wait for both threads, give back a batch claimed that will not be sent, and see
        everything written. ``strict``: raise the first error (else only log them: an error
        is already on its way)."""
        errors: list[BaseException] = []
        back: list[_Outcome] = []
        if self.claiming is not None:
            try:
                claimed = self._claimed()
            except BaseException as exc:
                errors.append(exc)
                claimed = None
            if claimed is not None and claimed.rows:
                back = released(claimed.rows)
                self.summary.claimed += len(back)
                _tally(self.summary, back)
                self.shared.give_back(len(back))
        try:
            self.recorder.wait()
        except BaseException as exc:
            errors.append(exc)
        if back:
            try:
                _record(self.shared, back, "")
            except BaseException as exc:
                errors.append(exc)
        self.claimer.shutdown(wait=True)
        self.recorder.close()
        self.sender.close()
        self.summary.peak_in_flight = self.sender.peak
        if errors:
            if strict:
                raise errors[0]
            for error in errors:
                log.error("dispatch: while stopping: %r", error)


def _work(shared: _Shared, worker: str, index: int) -> DispatchSummary:
    return _Pipeline(shared, worker, index).run()


def dispatch(
    app: App,
    channels: Mapping[str, Channel],
    *,
    worker: str,
    deadline: float | None = None,
    max_messages: int | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
    follow: bool = False,
) -> DispatchSummary:
    """Send what is due (see the module docstring) and return the counts.

    Returns when nothing is due any more (or, with ``follow``, only when stopped), at
    ``deadline`` (a ``time.monotonic()`` value), after ``max_messages`` messages were handled,
    or when ``stop`` is set. ``workers`` threads each claim their own batches (names
    ``<worker>/<n>``). ``progress`` is called with the number of messages handled since its
    last call. On SQLite raises :class:`DispatcherBusyError` when another dispatcher runs.
    """
    if workers < 1:
        raise InputError(f"--workers must be at least 1, not {workers}")
    if max_messages is not None and max_messages < 0:
        raise InputError(f"--max must be 0 or more, not {max_messages}")
    started = time.monotonic()
    shared = _Shared(
        app,
        channels,
        deadline=deadline,
        max_messages=max_messages,
        stop=stop,
        progress=progress,
        follow=follow,
    )
    with dispatch_lock(app.settings.database_url), closing(shared):
        expired, requeued, cancelled = _housekeeping(shared)
        names = [worker] if workers == 1 else [f"{worker}/{n}"[:64] for n in range(workers)]
        results: list[DispatchSummary] = []
        errors: list[BaseException] = []
        done = threading.Event()
        beating = threading.Thread(
            target=_heartbeat,
            args=(shared, [name[:64] for name in names], done),
            name="dispatch-heartbeat",
            daemon=True,
        )
        beating.start()
        try:
            if workers == 1:
                results.append(_work(shared, names[0][:64], 0))
            else:

                def run(name: str, index: int) -> None:
                    try:
                        part = _work(shared, name, index)
                    except BaseException as exc:  # surfaced in the caller's thread below
                        errors.append(exc)
                        shared.stop_event.set()
                        return
                    with shared.lock:
                        results.append(part)

                threads = [
                    threading.Thread(target=run, args=(name, i), name=f"dispatch-{i}", daemon=True)
                    for i, name in enumerate(names)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                if errors:
                    raise errors[0]
        finally:
            done.set()
            beating.join()
    summary = shared.summary
    summary.workers = workers
    summary.expired_leases += expired
    summary.requeued_leases += requeued
    summary.cancelled_skipped += cancelled
    for part in results:
        summary.add(part)
    reasons = [part.stopped_by for part in results]
    summary.stopped_by = next((r for r in reasons if r != "drained"), "drained")
    with app.sessions() as session:
        keys = {shared.circuit_keys[k] for k in channels if k in shared.circuit_keys}
        summary.waiting_for = [c for c in open_circuits(session) if c.key in keys]
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


__all__ = [
    "DispatchSummary",
    "DispatcherBusyError",
    "dispatch",
    "dispatch_lock",
    "gate_decision",
]
