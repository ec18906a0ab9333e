"""The outbox worker: claim due messages with a lease, gate them again, send, record, retry.

This module runs the workers (:class:`_Pipeline`, :func:`dispatch`); each stage lives in a
module of its own in this package (drawn in its ``__init__``). One pass of a worker, per
channel in turn:

1. **Claim** (claim.py) up to about ten seconds' worth of the channel's rate of queued messages
   whose ``not_before`` has come, of runs that are ``active`` (or ``completed``: the sequencer
   completes a run once its last step is queued). PostgreSQL: ``UPDATE ... WHERE id IN (SELECT
   ... FOR UPDATE OF outbox_messages SKIP LOCKED LIMIT n)`` so any number of workers on any
   number of machines share the queue; SQLite: the same statement, one dispatcher at a time (an
   OS file lock, see :class:`DispatcherBusyError`). Claimed rows are ``sending`` with
   ``claimed_by``/``claimed_until`` (the lease) and their group's ``claim_id`` (a
   ``dispatch_claims`` row per group of ``dispatch_max_in_flight``, ``claimed``), committed
   before anything is sent. A claim skips participants with a message already ``sending``
   (claims take turns on PostgreSQL, an advisory lock), so no two workers gate and send to one
   person at once.
2. **Gate** (gate.py) each message with :func:`engine.policy.decide` against what is true NOW:
   consent, suppressions (by address hash), the recipient's candidate zones, the run's send
   window and the contacts ledger (with the messages left ``unknown``: they may have gone)
   under both the global cap (settings) and the campaign's own cap. ``WaitUntil`` puts it back
   to ``queued`` at the instant the rules allow (no attempt counted); ``Skip`` marks it
   ``skipped`` with the reason.
3. **Hand off** (record.py) each group of ``dispatch_max_in_flight`` messages of the batch (the
   claim cuts it in groups, each a ``dispatch_claims`` row) to the sending thread right before
   the group's first request: its claim moves ``claimed -> handed``, one conditional UPDATE of
   one row, committed with the outcomes known by then (engine/sending/record.py).
   **Send** (batch.py) through the channel, paced by the rate limit of the channel and its
   sender (the From address; Twilio's messaging service, else its from number). PostgreSQL: one
   limit shared by every dispatcher on the database, whatever machine it runs on
   (engine/sending/shared_ratelimit.py: slots reserved in blocks on one timeline in the
   database). SQLite: one dispatcher at a time, so its own token bucket, shared by its workers,
   is the whole limit (engine/sending/ratelimit.py). Dynamic-template emails go in batches of
   up to 1,000 personalizations (``SendGridChannel.send_batch``), each taking one slot per
   message. A provider that takes its time to answer gets up to ``dispatch_max_in_flight``
   requests at once from each worker (engine/sending/in_flight.py), so that its latency does
   not set the send rate; each outcome is settled on the sending thread as it comes back.
4. **Record** the outcomes as they come (record.py: at each hand-off and at least every 100 ms,
   in a few set-based statements on the writing thread): ``sent`` with provider, provider
   message id and ``sent_at`` plus a ``contacts`` row (the frequency cap's ledger); an error
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
only once its group's claim is handed off. A worker that dies leaves its rows ``sending``; when
their lease runs out (or their dispatcher's heartbeat stops) any dispatcher
(:func:`engine.sending.leases.housekeeping`) marks them ``unknown`` if their group was handed
off (they may have gone: ``campaign outbox unknown`` lists them and ``campaign outbox
resolve``, ``campaign outbox reconcile`` or a provider event settles them), and otherwise moves
the claim ``claimed -> lapsed`` and puts them back to ``queued`` (nothing of them went). The
hand-off and the lapse are each one conditional UPDATE of the group's claim row, so one of them
happens, never both: a dispatcher that outlived its lease and finds a group lapsed sends none
of it. A claim that is missing (an older dispatcher's, or lost in a PostgreSQL crash: the table
is UNLOGGED) counts as handed off. An outcome written after a webhook already moved the row on
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager

from sqlalchemy.engine import make_url

from engine.app import App
from engine.channels.base import Channel
from engine.errors import EngineError, InputError
from engine.metrics import recording as metrics
from engine.sending import gate
from engine.sending import outbox_status as st
from engine.sending.batch import Batch
from engine.sending.circuits import open_circuits
from engine.sending.claim import Claimed, claim_batch, halted_runs
from engine.sending.gate import FACTS_MAX_AGE_SECONDS, decide_batch, gate_decision
from engine.sending.in_flight import InFlight
from engine.sending.leases import heartbeat, housekeeping
from engine.sending.record import (
    ClaimedRow,
    Outcome,
    Recorder,
    SendRate,
    hand_off_span,
    lead_allowance,
    released,
)
from engine.sending.shared import (
    DispatchSummary,
    Shared,
    now,
    record_now,
    statement,
    transaction,
)

log = logging.getLogger(__name__)

CHANNEL_ORDER = ("email", "sms")
POLL_SECONDS = 1.0  # follow mode: how often an idle worker looks for due messages


class DispatcherBusyError(EngineError):
    """SQLite: another dispatcher holds the database's dispatch lock."""


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


def _tally(summary: DispatchSummary, outcomes: Sequence[Outcome]) -> None:
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
    taken on the sending thread just before the batch goes (:func:`decide_batch`). Only a claim
    made with nothing in flight or unwritten can tell that nothing is due. A message may go
    only once its group has been handed off, just before the group's first request."""

    def __init__(self, shared: Shared, worker: str, index: int) -> None:
        self.shared = shared
        self.worker = worker
        self.index = index
        self.summary = DispatchSummary()
        self.kinds = [kind for kind in CHANNEL_ORDER if kind in shared.channels]
        self.claimer = ThreadPoolExecutor(1, thread_name_prefix=f"dispatch-claim-{index}")
        self.recorder = Recorder(
            lambda: transaction(shared),
            lambda: now(shared),
            shared.report,
            name=f"dispatch-write-{index}",
            statement=None if shared.sqlite else lambda: statement(shared),
        )
        # Kept across batches: how fast the provider answers, and the send rate, carry over.
        self.pace = SendRate()
        self.sender: InFlight[ClaimedRow] = InFlight(
            shared.settings.dispatch_max_in_flight, name=f"dispatch-send-{index}"
        )
        self.claiming: Future[Claimed | None] | None = None
        # The batch claimed ahead and the hand-off of its first spans, written early.
        self.ahead: tuple[Claimed, dict[int, Future[tuple[int, frozenset[int]]]]] | None = None
        self.position = 0  # the channel (of self.kinds) claimed next
        self.quiet = 0  # claims in a row that found nothing with nothing in flight or unwritten

    def _claim_next(self, kind: str, *, overlapped: bool) -> None:
        self.claiming = self.claimer.submit(claim_batch, self.shared, self.worker, kind, overlapped)

    def _claimed(self) -> Claimed | None:
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
        if not self.kinds:
            self.summary.stopped_by = self.shared.stop_reason() or "drained"
            return
        while True:
            if self.claiming is None and not self._claim_or_stop():
                return
            claimed = self._claimed()
            if claimed is None:  # stopping or out of quota: the loop's top says which
                continue
            self.position = (self.position + 1) % len(self.kinds)
            if claimed.rows:
                self.quiet = 0
                self.summary.claimed += len(claimed.rows)
                self._send(claimed, self.kinds[self.position])
            elif not self._nothing_claimed(claimed):
                return

    def _claim_or_stop(self) -> bool:
        """Start the claim of the next channel in turn; False (and why, in the summary)
        when the worker is to stop instead."""
        reason = self.shared.stop_reason()
        if reason is not None:
            self.summary.stopped_by = reason
            return False
        self._claim_next(self.kinds[self.position], overlapped=self.recorder.busy)
        return True

    def _nothing_claimed(self, claimed: Claimed) -> bool:
        """A claim found nothing: ask again once what is in flight is written, try the other
        channels, then (follow mode) poll; False when the worker is done (drained)."""
        if claimed.overlapped:
            # It skipped the members of batches in flight: ask again once written.
            self.recorder.wait()
            return True
        self.quiet += 1
        if self.quiet < len(self.kinds):
            return True
        if not self.shared.follow:
            self.summary.stopped_by = self.shared.stop_reason() or "drained"
            return False
        if self.shared.stop_event.wait(POLL_SECONDS):
            return True
        if self.index == 0:
            housekeeping(self.shared)
        self.quiet = 0
        return True

    def _send(self, claimed: Claimed, next_kind: str) -> None:
        """Gate (now) and send one claimed batch, each group handed off right before its
        first request, its outcomes written as they come. The next claim, of ``next_kind``,
        runs while it is sent."""
        batch = Batch(self.shared, self.worker, claimed.kind, self.sender, self.recorder, self.pace)
        batch.probing = batch.circuit_open = claimed.circuit is not None
        if self.ahead is not None and self.ahead[0] is claimed:
            batch.handing.update(self.ahead[1])
        self.ahead = None
        assert claimed.facts is not None
        try:
            # Claimed ahead: a run paused or cancelled meanwhile keeps its messages queued.
            halted = halted_runs(self.shared, {row.run_id for row in claimed.rows})
            rows = [row for row in claimed.rows if row.run_id not in halted]
            facts = claimed.facts
            if rows and time.monotonic() - claimed.read_at > FACTS_MAX_AGE_SECONDS:
                facts = gate.load_facts(self.shared, rows, claimed.kind)
            ready, outcomes = decide_batch(self.shared, rows, facts, claimed.kind)
            batch.digests, batch.checked_at = facts.digests, facts.read_at
        except BaseException:
            for outcome in released(claimed.rows):
                batch.add_outcome(outcome)
            self._hand_over(batch)
            raise
        for outcome in released([r for r in claimed.rows if r.run_id in halted]) + outcomes:
            batch.add_outcome(outcome)
        # The next claim runs while this batch is sent (and its outcomes are written).
        if self.shared.stop_reason() is None:
            self._claim_next(next_kind, overlapped=True)
        try:
            batch.run(ready)
            self._hand_off_next()
        finally:
            # Even when sending broke off: what did happen is written.
            self._hand_over(batch)

    def _hand_off_next(self) -> None:
        """Once a batch's requests are all answered, hand off the first span of the batch
        claimed ahead (when its claim is in) and the span its lead reaches (the one
        :meth:`Batch._hand_off_ahead` would ask for at the first request), in one write with
        the outcomes not written yet: neither then waits for the writer after the gate, which
        on SQLite may be held up meanwhile by the next claim (it starts with the batch).
        Nothing is in flight and every outcome is in this write, so what a kill may leave
        unknown is those two spans, within the same bound (engine/sending/record.py
        unknown_bound)."""
        claiming = self.claiming
        if claiming is None or not claiming.done() or claiming.exception() is not None:
            return
        claimed = claiming.result()
        if claimed is None or not claimed.rows or self.shared.stop_reason() is not None:
            return
        span = hand_off_span(
            self.sender.limit, self.pace.for_spans(self.sender.window, self.sender.latency)
        )
        ahead = span + lead_allowance(self.sender.limit, span)
        groups = -(-ahead // self.shared.group_size)
        claims = list(dict.fromkeys(row.claim for row in claimed.rows))[:groups]
        self.ahead = (claimed, dict.fromkeys(claims, self.recorder.hand_off_later(claims)))

    def _hand_over(self, batch: Batch) -> None:
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
        back: list[Outcome] = []
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
                record_now(self.shared, back, "")
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


def _work(shared: Shared, worker: str, index: int) -> DispatchSummary:
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
    shared = Shared(
        app,
        channels,
        deadline=deadline,
        max_messages=max_messages,
        stop=stop,
        progress=progress,
        follow=follow,
    )
    with dispatch_lock(app.settings.database_url), closing(shared):
        expired, requeued, cancelled = housekeeping(shared)
        names = [worker] if workers == 1 else [f"{worker}/{n}"[:64] for n in range(workers)]
        results: list[DispatchSummary] = []
        errors: list[BaseException] = []
        done = threading.Event()
        beating = threading.Thread(
            target=heartbeat,
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
