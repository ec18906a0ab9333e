"""What the threads of one ``dispatch()`` share, and the small helpers every stage uses.

:class:`Shared` holds the settings, the channels, the rate limits and circuit keys of each
channel, caches of run definitions and program zones, the ``max_messages`` quota, the stop
conditions and the summary. :func:`transaction` is a writing transaction (SQLite: one of the
dispatcher's threads at a time); :func:`record_now` writes outcomes outside the writing
thread (engine/sending/record.py).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from engine.app import App
from engine.channels.base import Channel
from engine.clock import ensure_utc
from engine.db.session import make_engine
from engine.definitions.schema import CampaignDefinition
from engine.policy import FrequencyCap
from engine.sending.circuits import Circuit
from engine.sending.ratelimit import SlotLimiter
from engine.sending.record import ASYNC_COMMIT, Outcome, group_size, write_outcomes
from engine.sending.sender_limits import rate_key, sender_limit
from engine.sending.shared_ratelimit import SharedTokenBucket

CLAIM_SECONDS = 10.0  # a claim holds about this many seconds of the channel's rate


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


class Shared:
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
        # The outcome writes and hand-offs (engine/sending/record.py), a transaction every
        # ~50 ms per worker: PostgreSQL, on connections of their own whose commits wait for
        # no WAL flush (see write_outcomes) and that are not pinged at each checkout; each
        # round trip costs the writing thread a turn at the GIL against the sending threads.
        self.writer_engine = (
            self.app.engine if self.sqlite else _async_commit_engine(self.settings.database_url)
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
        if self.writer_engine is not self.app.engine:
            self.writer_engine.dispose()

    def report(self, count: int) -> None:
        if self.progress is not None and count:
            self.progress(count)


def _async_commit_engine(url: str) -> Engine:
    """PostgreSQL: an engine whose connections commit without waiting for the WAL flush
    (``synchronous_commit = off`` from the connection's start), marked so in each
    connection's ``info`` (:data:`ASYNC_COMMIT`), and without a ping at each checkout."""
    engine = make_engine(
        url, pool_pre_ping=False, connect_args={"options": "-c synchronous_commit=off"}
    )
    event.listen(engine, "connect", lambda _dbapi, record: record.info.update({ASYNC_COMMIT: True}))
    return engine


@contextmanager
def writing(shared: Shared) -> Iterator[None]:
    """SQLite: one writing transaction of this dispatcher's threads at a time. SQLite makes a
    writer wait for another (busy_timeout), except a transaction that read before it writes
    while another committed meanwhile: that one fails at once."""
    if not shared.sqlite:
        yield
        return
    with shared.write_lock:
        yield


@contextmanager
def transaction(shared: Shared) -> Iterator[Connection]:
    """A writing transaction (SQLite: one of this dispatcher's threads at a time)."""
    with writing(shared), shared.writer_engine.begin() as connection:
        yield connection


@contextmanager
def statement(shared: Shared) -> Iterator[Connection]:
    """PostgreSQL: a writing connection in autocommit, for a write that is one statement
    (a transaction of its own, without the round trips of BEGIN and COMMIT)."""
    with shared.writer_engine.connect() as connection:
        yield connection.execution_options(isolation_level="AUTOCOMMIT")


def now(shared: Shared) -> datetime:
    return ensure_utc(shared.app.clock.now())


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def record_now(shared: Shared, outcomes: Sequence[Outcome], provider: str) -> None:
    """Write ``outcomes`` now, in a transaction of their own (engine/sending/record.py)."""
    if outcomes:
        with transaction(shared) as connection:
            write_outcomes(connection, outcomes, provider, now(shared))


def rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
