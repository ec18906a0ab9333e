"""Send: one claimed batch of one channel, every row turned into an outcome.

:class:`Batch` builds each message, hands off its group before its first request (and the
next span's a span ahead, engine/sending/record.py), checks the recipient's suppressions
again, waits for the rate's slot, starts the request with several in flight
(engine/sending/in_flight.py), and settles each answer as it comes back: sent, queued again
(an outage: the channel's circuit opens), failed, unknown. Dynamic-template emails go in
requests of up to 1,000 personalizations. What stops the rest of a batch (a stop, a paused
run, an open circuit) releases it to the queue untouched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from datetime import datetime

from engine.channels.base import (
    CampaignStopError,
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
from engine.errors import EngineError
from engine.metrics import recording as metrics
from engine.sending import outbox_status as st
from engine.sending.circuits import PROVIDER_UNAVAILABLE
from engine.sending.failures import (
    auto_pause,
    close_circuit,
    counts_as_failure,
    failure_streak,
    suppress_address,
    trip_circuit,
)
from engine.sending.gate import (
    SUPPRESSION_RECHECK_AHEAD,
    SUPPRESSION_RECHECK_SECONDS,
    suppressed_among,
)
from engine.sending.in_flight import Done, InFlight
from engine.sending.outbox import build_outbound
from engine.sending.record import (
    FLUSH_SECONDS,
    ClaimedRow,
    Outcome,
    Recorder,
    SendRate,
    hand_off_lead,
    hand_off_span,
)
from engine.sending.shared import Shared

log = logging.getLogger(__name__)


class Batch:
    """Sends one claimed batch of one channel and turns every row into an outcome."""

    def __init__(
        self,
        shared: Shared,
        worker: str,
        channel: str,
        sender: InFlight[ClaimedRow],
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
        self.outcomes: list[Outcome] = []  # all of them (each also given to the recorder)
        # The hand-off groups (claims) of this batch handed off, and those found lapsed.
        self.handed: set[int] = set()
        self.lapsed: set[int] = set()
        # Hand-offs written ahead, not yet waited for (each claim of a span: its write).
        self.handing: dict[int, Future[tuple[int, frozenset[int]]]] = {}
        # The claims of the single sends in sending order (a span is a run of them).
        self.claims: list[int] = []
        self.claim_position: dict[int, int] = {}
        # The single send before which no span's hand-off can be due (_hand_off_ahead): the
        # next span is looked for once a span, not at every message.
        self.ahead_due = 0
        self.stopped: str | None = None
        self.held_back: set[int] = set()  # runs paused or stopped during this batch
        self.release_rest_at: datetime | None = None
        # The channel's circuit was open (its wait is over): the first request goes alone,
        # a probe, and the first success closes the circuit.
        self.probing = False
        self.circuit_open = False
        # The suppression re-check (SUPPRESSION_RECHECK_SECONDS): the batch's address hashes,
        # when they were last read, those the last read covered (None: all of them, the
        # gate's facts), and those suppressed since.
        self.digests: Mapping[str, str] = {}
        self.checked_at = time.monotonic()
        self.checked: set[str] | None = None
        self.newly_suppressed: set[str] = set()

    def run(self, ready: list[tuple[ClaimedRow, str]]) -> None:
        try:
            self._run(ready)
        finally:
            # Broken off (an error): what never started goes back to the queue.
            decided = {outcome.row.id for outcome in self.outcomes}
            for row, _ in ready:
                if row.id not in decided:
                    self._release(row)

    def _run(self, ready: list[tuple[ClaimedRow, str]]) -> None:
        singles, templated = self._build(ready)
        addresses = {row.id: address for row, address in ready}
        self._send_singles(singles, addresses)
        if templated:
            self._send_templated(templated, addresses)

    def _build(
        self, ready: list[tuple[ClaimedRow, str]]
    ) -> tuple[list[tuple[ClaimedRow, Outbound]], list[tuple[ClaimedRow, OutboundEmail]]]:
        """Each message as its channel sends it: a request of its own (singles), or, for a
        dynamic-template email, a personalization of a shared request (templated). Content
        that does not build fails its message."""
        singles: list[tuple[ClaimedRow, Outbound]] = []
        templated: list[tuple[ClaimedRow, OutboundEmail]] = []
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
                self.add_outcome(
                    Outcome(row, st.FAILED, "bad_content", attempts=row.attempts, error=str(exc))
                )
                continue
            if isinstance(message, OutboundEmail) and message.is_template:
                templated.append((row, message))
            else:
                singles.append((row, message))
        return singles, templated

    def _send_singles(
        self, singles: list[tuple[ClaimedRow, Outbound]], addresses: Mapping[int, str]
    ) -> None:
        """One request per message, several in flight, each group handed off before its first
        request and the next span's hand-off written ahead."""
        single_addresses = [addresses[row.id] for row, _ in singles]
        next_group = _next_groups(singles)
        self.claims = list(dict.fromkeys(row.claim for row, _ in singles))
        self.claim_position = {claim: n for n, claim in enumerate(self.claims)}
        try:
            for index, (row, message) in enumerate(singles):
                if self._send_one(row, message, addresses, single_addresses, index):
                    self._hand_off_ahead(singles, index, next_group)
                    self.recorder.flush_if_due()
        finally:
            # Even when the loop broke off: what went out is recorded.
            self._settle(self.sender.drain(), addresses)

    def _send_one(
        self,
        row: ClaimedRow,
        message: Outbound,
        addresses: Mapping[int, str],
        batch: Sequence[str],
        index: int,
    ) -> bool:
        """Start the request of the ``index``-th single send of the batch (addresses
        ``batch``), unless what is true now holds it back; True when it started."""
        # Room first (settling what came back: a 429 holds the rest back), then the rate's
        # slot, so that the request starts as the slot comes.
        self._settle(self.sender.room(), addresses)
        if not self._may_send(row):
            return False
        # Suppressions are read again before the slot, not between the slot and the request
        # (a read there would bunch requests up against the next slot); and after the slot
        # only when waiting for it took long (at 1 SMS/s, a second).
        if self._skipped_as_suppressed(row, addresses[row.id], batch, index):
            return False
        # Its group's hand-off (with the outcomes so far) before its first request.
        if not self._handed_off([row]):
            self._release(row)
            return False
        waited = self.bucket.acquire(meanwhile=lambda wait: self._meanwhile(wait, addresses))
        metrics.rate_limit_wait(self.shared.app.metrics, self.channel_kind, waited)
        # (What came back meanwhile may hold the rest back: a 429, a 401.)
        if not self._may_send(row):
            return False
        if self._skipped_as_suppressed(row, addresses[row.id], batch, index):
            return False
        self.sender.start(row, self.channel.send, message)
        self.pace.started()
        if self.probing:  # the probe's answer first: is the provider back?
            self._settle(self.sender.drain(), addresses)
            self.probing = False
        return True

    def _meanwhile(self, wait: float, addresses: Mapping[int, str]) -> None:
        """While waiting ``wait`` seconds for the rate's slot (at 1 SMS/s, most of a second):
        settle the answers that come back, and write them at least every FLUSH_SECONDS."""
        until = time.monotonic() + wait
        while (left := until - time.monotonic()) > 0 and self.sender.busy:
            self._settle(self.sender.within(min(left, FLUSH_SECONDS)), addresses)
            self.recorder.flush_if_due()

    def _settle(self, done: Iterator[Done[ClaimedRow]], addresses: Mapping[int, str]) -> None:
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
                self.add_outcome(Outcome(row, st.UNKNOWN, "unexpected_error", error=repr(error)))

    def _send_templated(
        self, templated: list[tuple[ClaimedRow, OutboundEmail]], addresses: Mapping[int, str]
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
            chunk = [
                (row, message)
                for position, (row, message) in enumerate(chunk)
                if not self._skipped_as_suppressed(row, addresses[row.id], remaining, position)
            ]
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
                    self.add_outcome(Outcome(row, st.UNKNOWN, "no_outcome_from_batch"))

    # -- decisions about the rest of the batch

    def _hand_off_ahead(
        self, singles: Sequence[tuple[ClaimedRow, Outbound]], index: int, next_group: Sequence[int]
    ) -> None:
        """Write the next span's hand-off in the background once it is at most
        :func:`hand_off_lead` messages ahead (engine/sending/record.py): the sending need
        not wait for the write, and what a kill leaves unknown stays within
        :func:`engine.sending.record.unknown_bound`. ``next_group``: where the group after
        each message's own begins.

        Looked at again only from :attr:`ahead_due` on (where the next span's lead begins,
        as measured now): skipping the messages before it can only write a hand-off later,
        never earlier than the lead of the moment allows."""
        if index < self.ahead_due:
            return
        limit = self.sender.limit
        span = hand_off_span(limit, self._span_rate())
        lead = hand_off_lead(limit, self.sender.window, span)
        start = next_group[index] if index < len(next_group) else len(singles)
        # The first group after this message's not yet handed off (nor asked for).
        while start < len(singles):
            if start - index > lead:
                self.ahead_due = start - lead
                return
            claim = singles[start][0].claim
            if claim in self.lapsed:
                self.ahead_due = start  # once past it
                return
            if claim not in self.handed and claim not in self.handing:
                claims = self._span(claim, span)
                self.handing.update(dict.fromkeys(claims, self.recorder.hand_off_later(claims)))
                self.ahead_due = index + 1
                return
            start = next_group[start]
        self.ahead_due = len(singles)

    def _span_rate(self) -> float:
        return self.pace.for_spans(self.sender.window, self.sender.latency)

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

    def _handed_off(self, rows: Sequence[ClaimedRow]) -> bool:
        """Hand off the groups of ``rows`` not handed off yet (engine/sending/record.py),
        each committed with the outcomes known so far before its first request. False when
        one of them lapsed (its lease ran out first: housekeeping put it back in the queue,
        and none of it may be sent by this dispatcher)."""
        if len(rows) == 1 and rows[0].claim in self.handed:  # the usual case: nothing to do
            return True
        wanted = [
            claim
            for claim in dict.fromkeys(row.claim for row in rows)
            if claim not in self.handed and claim not in self.lapsed
        ]
        missing = [claim for claim in wanted if claim not in self.handing]
        if len(rows) == 1 and missing:  # a single send: its span
            missing = self._span(missing[0], hand_off_span(self.sender.limit, self._span_rate()))
        if missing:
            self.handing.update(dict.fromkeys(missing, self.recorder.hand_off_later(missing)))
        for claim in wanted:
            job = self.handing.get(claim)
            if job is None:  # settled with an earlier claim's write
                continue
            waiting = time.monotonic()
            made = self.recorder.handed(job)
            self.pace.waited(time.monotonic() - waiting)
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
        """Whether ``address`` (``batch[start]``) was suppressed since the gate's facts were
        read: read again for the next SUPPRESSION_RECHECK_AHEAD addresses of ``batch`` from
        ``start`` on when the last read is older than SUPPRESSION_RECHECK_SECONDS or did not
        cover ``address``."""
        digest = self.digests.get(address)
        stale = time.monotonic() - self.checked_at >= SUPPRESSION_RECHECK_SECONDS
        uncovered = self.checked is not None and digest is not None and digest not in self.checked
        if self.digests and (stale or uncovered):
            ahead = batch[start : start + SUPPRESSION_RECHECK_AHEAD]
            wanted = {d for a in ahead if (d := self.digests.get(a))}
            self.newly_suppressed |= suppressed_among(self.shared, self.channel_kind, list(wanted))
            self.checked_at = time.monotonic()
            self.checked = wanted
        if not self.newly_suppressed:
            return False
        return digest in self.newly_suppressed

    def _skipped_as_suppressed(
        self, row: ClaimedRow, address: str, batch: Sequence[str], start: int
    ) -> bool:
        """Skip ``row`` when its address was suppressed since the gate read (see
        :meth:`_suppressed_since`); True when it was."""
        if not self._suppressed_since(address, batch, start):
            return False
        self.add_outcome(Outcome(row, st.SKIPPED, "suppressed"))
        return True

    def _stopping(self) -> bool:
        if self.stopped is None:
            self.stopped = self.shared.stop_reason()
            if self.stopped == "max_messages":
                self.stopped = None  # the claim was already sized to the quota
        return self.stopped is not None

    def _may_send(self, row: ClaimedRow) -> bool:
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

    def _release(self, row: ClaimedRow, not_before: datetime | None = None) -> None:
        self.add_outcome(
            Outcome(row, st.QUEUED, "released", not_before or row.not_before, row.attempts)
        )

    # -- outcomes

    def add_outcome(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self.recorder.add(outcome, self.channel.name)

    def _sent(self, row: ClaimedRow, result: SendResult, address: str) -> None:
        with self.shared.lock:
            self.shared.failures[row.run_id] = 0
        self.add_outcome(Outcome(row, st.SENT, result=result, address=address))
        if self.circuit_open:
            self.circuit_open = False
            # The failures of this outage written first: each may be the cause.
            self.recorder.wait()
            close_circuit(self.shared, self.channel_kind)

    def _failed(self, row: ClaimedRow, address: str, error: ChannelError) -> None:
        shared = self.shared
        attempts = row.attempts + 1
        text = str(error)[:2000]
        if isinstance(error, DuplicateSendError):
            # The sink already holds this message's file: it went, earlier.
            self.add_outcome(Outcome(row, st.SENT, result=None, address=address, error=text))
            return
        metrics.provider_error(shared.app.metrics, self.channel_kind, error)
        if isinstance(error, CampaignStopError):
            self.add_outcome(Outcome(row, st.QUEUED, "run_paused", None, row.attempts, text))
            self.held_back.add(row.run_id)
            auto_pause(shared, row.run_id, f"provider refused the campaign: {text}")
        elif isinstance(error, RecipientError):
            self.add_outcome(
                Outcome(row, st.FAILED, f"recipient_{error.code}", None, attempts, text)
            )
            if error.suppress or error.invalid_address:
                suppress_address(shared, self.channel_kind, address, error)
        elif isinstance(error, UnknownOutcomeError):
            self.add_outcome(Outcome(row, st.UNKNOWN, "no_answer", None, attempts, text))
        elif isinstance(error, RetryableError):
            # The provider's trouble, not the message's: it goes back as it was (no attempt
            # spent), and the channel waits for the provider (its circuit opens), the rest of
            # this batch too. Requests of the same moment that fail too take the same wait.
            # A request that failed (not a 429) goes one retry delay after the others, so
            # that the next probe is another message: one the provider fails on alone (a
            # poison message) is counted, and in the end failed, when another message closes
            # the circuit (engine/sending/circuits.py strike_suspects).
            if self.release_rest_at is None:
                circuit = trip_circuit(shared, self.channel, self.channel_kind, error)
                self.release_rest_at = circuit.retry_at
                self.circuit_open = True
            if error.status == 429:
                why, until = "throttled", self.release_rest_at
            else:
                why = PROVIDER_UNAVAILABLE
                until = self.release_rest_at + shared.settings.dispatch_retry_delay
            self.add_outcome(Outcome(row, st.QUEUED, why, until, row.attempts, text))
        elif isinstance(error, MessageError):
            self.add_outcome(Outcome(row, st.FAILED, "message_refused", None, attempts, text))
        else:
            self.add_outcome(Outcome(row, st.FAILED, "rejected", None, attempts, text))
        if counts_as_failure(error):
            with shared.lock:
                known = row.run_id in shared.failures
            # The streak may have begun in an earlier dispatch (an earlier tick): start there.
            before = 0 if known else failure_streak(shared, row.run_id)
            with shared.lock:
                shared.failures[row.run_id] = shared.failures.get(row.run_id, before) + 1
                count = shared.failures[row.run_id]
            if count >= shared.settings.dispatch_pause_after_failures:
                self.held_back.add(row.run_id)
                auto_pause(
                    shared,
                    row.run_id,
                    f"{count} consecutive provider failures; last: {text}",
                )


def _next_groups(singles: Sequence[tuple[ClaimedRow, Outbound]]) -> list[int]:
    """For each single send, where the group after its own begins (that group's hand-off
    may be written ahead); ``len(singles)`` for the last group's."""
    next_group = [len(singles)] * len(singles)
    for index in range(len(singles) - 2, -1, -1):
        same = singles[index][0].claim == singles[index + 1][0].claim
        next_group[index] = next_group[index + 1] if same else index + 1
    return next_group
