"""A send rate shared through PostgreSQL by every dispatcher that uses the same sender (#4).

:class:`engine.sending.ratelimit.TokenBucket` paces one process. On PostgreSQL any number of
dispatchers, on any number of machines, share the queue, and each pacing itself alone they
sent at that many times the configured rate. Here the limit lives in the database instead.

**One timeline per bucket.** A row of ``rate_limit_slots`` per bucket (a channel and its
sender) holds ``next_slot``: the instant, on the DATABASE's clock, from which the bucket's
timeline is free. Slots lie on it ``1/rate`` apart. A dispatcher reserves a block of
consecutive slots with one statement (:data:`RESERVE_SLOTS`: ``next_slot = greatest(
next_slot, clock_timestamp()) + n/rate``, returning where the block starts and the database's
clock), on a connection of its own in autocommit (the row is locked for that one statement,
never for the length of a dispatcher's transaction). Blocks never overlap: every reservation
of a bucket goes through its one row. Using the database's clock, not each machine's, keeps
dispatchers on machines whose clocks disagree on one timeline: a process maps a block onto
its own monotonic clock by the offset the statement measured (:func:`to_local`: the database
read its clock somewhere in the round trip, taken as the middle) and hands the block's slots
to its threads, each at its own time.

**The bound, across all processes.** A slot is used no earlier than its instant and at most
``(burst - 1) / rate`` after it: a caller later than that loses it (used later, it would
crowd the next slot, perhaps another process's). So all the slots used lie on one grid
``1/rate`` apart, each within ``(burst - 1) / rate`` after its point, and any interval of
length T holds at most ``rate * T + burst`` of them, as with the TokenBucket. Two
approximations, both of the order of one reservation's round trip (well under a millisecond
on a LAN): each process knows the database's clock to within half a round trip, and the first
slot of a block is used as soon as the reservation comes back, however late that is (it may
have started at the database's "now"). Clock drift over one block (50 ms) is micro-seconds.
A batch (``acquire(n)``) takes ``n`` consecutive slots and goes at the last one's instant.

**How many slots a block holds** adapts to the process, so that none holds timeline that
others want and it cannot use: a process that waited for the last slot of its block (it
could send faster than the rate) asks for twice as many next time, up to
:data:`BLOCK_SECONDS` of the rate (one statement per 50 ms at most); one whose slots went by
unused (it is slower than the rate: a provider's latency, a busy machine) asks for as many
as it used, down to one slot, a statement per message. So dispatchers that each keep up with
the rate take turns of up to 50 ms, and dispatchers each slower than it interleave message
by message and together still reach it. A dispatcher that stops wastes at most the rest of
its block.

**Far below the rate** (an email rate no dispatcher reaches; 1e9/s for "no limit"), a
statement per message would cost more than the sending. A block reserved while nobody held
the timeline (it started at the database's now) that holds fewer slots than
:data:`IDLE_BLOCK_ROUND_TRIPS` round trips of the rate (a few ms) is used as a *window*: its
slots at any time in the next that-many round trips, at the process's own pace, and it grows
as the process uses it up. The timeline moves on by the slots alone, so other dispatchers go
at once, side by side. (Holding the window's length of timeline instead made every other
dispatcher wait for it: two took turns and together went no faster than one.) The price is
the bound's: while the timeline is idle, up to one window's slots per dispatcher may fall
after their points on it, so in a window of length T at most ``rate * T + burst`` plus, per
dispatcher, fewer than ``rate * IDLE_BLOCK_ROUND_TRIPS * round trip`` (0.4% of a second's
rate at 86 µs round trips). Below about 230/s at that round trip a window would hold less
than one slot, so SMS rates and the like never use one: their bound is exact.

Configure one rate for a bucket everywhere: each process paces its blocks at its own
``rate``, so dispatchers configured differently share at most the highest rate among them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from engine.sending.ratelimit import SlotLimiter

# The most timeline one reservation takes: a dispatcher that keeps up with the rate runs one
# statement per this many seconds, and another one waits at most this long for its turn.
BLOCK_SECONDS = 0.05
# The window of a block reserved on an idle timeline, in the reservation's round trips (a
# few ms; at most BLOCK_SECONDS): a dispatcher far slower than the rate (say 1e9/s: no limit
# meant) runs a statement per window, not per message, and the statements take about 1/50
# of its sending thread's time (at 20, email dispatch on PostgreSQL lost about a tenth of its
# speed to them).
IDLE_BLOCK_ROUND_TRIPS = 50

# Reserve %(span)s seconds of bucket %(bucket)s's timeline, from where it is free but not
# before the database's now; return where the reservation starts and the database's clock,
# both in seconds since the epoch. numeric, not double precision: at 1.8e9 s a double's step
# is 0.24 µs, more than a slot at a million messages a second, so slots would overlap. In the
# driver's own form, run as a prepared statement on the raw connection: it runs on the
# sending thread, every few milliseconds when the rate is far above what a dispatcher sends,
# and SQLAlchemy's execution cost 72 µs of CPU of its 117 µs.
RESERVE_SLOTS = """
INSERT INTO rate_limit_slots AS r (bucket, next_slot)
VALUES (%(bucket)s, extract(epoch FROM clock_timestamp())::numeric + %(span)s)
ON CONFLICT (bucket) DO UPDATE
    SET next_slot = greatest(r.next_slot + %(span)s, excluded.next_slot)
RETURNING r.next_slot - %(span)s AS start, r.next_slot AS end,
    extract(epoch FROM clock_timestamp())::numeric AS db_now
"""


@dataclass(frozen=True)
class Reservation:
    """Seconds ``[start, end)`` of a bucket's timeline, and the database's clock when they
    were reserved (all on the database's clock, seconds since the epoch)."""

    start: Decimal
    end: Decimal
    db_now: Decimal


def reserve_slots(connection: Connection, bucket: str, slots: int, rate: float) -> Reservation:
    """Reserve the next ``slots`` slots of ``bucket`` at ``rate`` per second. ``connection``
    must be in autocommit: in a transaction the row would stay locked until it ends, and every
    other dispatcher of the bucket would wait for it."""
    span = Decimal(slots) / Decimal(rate)
    driver: Any = connection.connection.driver_connection
    start, end, db_now = driver.execute(
        RESERVE_SLOTS, {"bucket": bucket, "span": span}, prepare=True
    ).fetchone()
    return Reservation(Decimal(start), Decimal(end), Decimal(db_now))


def to_local(at: Decimal, reservation: Reservation, sent: float, received: float) -> float:
    """Instant ``at`` of the database's clock on the local clock, given that the database read
    its clock (``reservation.db_now``) somewhere between ``sent`` and ``received`` on the local
    clock: taken as the middle, so off by at most half the round trip."""
    return float(at - reservation.db_now) + (sent + received) / 2


@dataclass
class _Block:
    """A reserved block on the local clock: slot k at ``start + k * interval``; or, for a
    block reserved on an idle timeline (``window``), ``size`` slots to use at any time
    within ``window`` seconds from ``start``."""

    start: float
    size: int
    interval: float
    window: float | None = None
    taken: int = 0  # slots handed out or gone by; the next one is slot ``taken``
    used: int = 0
    waited: bool = False  # the last slot handed out was still ahead of its caller

    @property
    def end(self) -> float:
        return self.start + (self.window if self.window is not None else self.size * self.interval)


class SharedTokenBucket(SlotLimiter):
    """The :class:`engine.sending.ratelimit.TokenBucket` interface (``rate``, ``reserve``,
    ``acquire``) over slots shared through the database with every process using the same
    ``key``. Safe to share between threads. It holds one connection of ``engine`` (opened on
    first use; a lost one is opened again once): :meth:`close` returns it.

    ``reservations`` counts the statements run and ``expired`` the slots that went by
    unused."""

    def __init__(
        self,
        engine: Engine,
        key: str,
        rate: float,
        *,
        burst: float = 1,
        block_seconds: float = BLOCK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError(
                "a rate limit shared through the database needs PostgreSQL (on SQLite one "
                "dispatcher runs at a time: engine.sending.ratelimit.TokenBucket is the whole "
                "limit)"
            )
        super().__init__(rate, burst=burst, clock=clock, sleep=sleep)
        self.key = key
        self._lateness = (burst - 1) * self.interval
        self._most = max(1, math.ceil(self.rate * block_seconds))
        self._ask = 1  # slots the next block asks for, from how the last one was used
        self._round_trip: float | None = None  # smoothed, seconds
        self._engine = engine
        self._connection: Connection | None = None
        self._block: _Block | None = None
        self.reservations = 0
        self.expired = 0

    def reserve(self, n: int = 1) -> float:
        """Reserve ``n`` slots; return the local clock time of the last one (may be in the
        past: then it is now)."""
        if n < 1:
            raise ValueError(f"reserve at least one slot, not {n}")
        with self._lock:
            slot = 0.0
            for left in range(n, 0, -1):
                slot = self._take(left)
            return slot

    def close(self) -> None:
        with self._lock:
            self._block = None
            self._discard()

    # -- internals (under the lock)

    def _take(self, left: int) -> float:
        """The next slot, reserving a block when this one has none left for us now."""
        while True:
            block = self._block
            if block is not None:
                slot = self._use(block, self._clock())
                if slot is not None:
                    return slot
                self._adapt(block, self._clock())
            self._block = self._new_block(max(left, self._ask))

    def _use(self, block: _Block, now: float) -> float | None:
        if block.window is not None:  # an idle timeline's block: any time in its window
            if block.taken >= block.size or now >= block.end:
                self.expired += block.size - block.taken
                block.taken = block.size
                return None
            block.taken += 1
            block.used += 1
            return max(block.start, now)
        # Slot 0 is taken straight after the reservation came back (late by at most that
        # round trip); any other only within the lateness the burst allows: skip those gone.
        k = block.taken
        if k > 0:
            gone = now - self._lateness - block.start
            if gone > 0:
                k = max(k, min(block.size, math.ceil(gone / block.interval)))
            while k < block.size and block.start + k * block.interval + self._lateness < now:
                k += 1  # (rounding)
        self.expired += k - block.taken
        block.taken = k
        if k >= block.size:
            return None
        at = block.start + k * block.interval
        block.taken += 1
        block.used += 1
        block.waited = at > now
        return max(at, now)

    def _adapt(self, block: _Block, now: float) -> None:
        if block.used < block.size:
            self._ask = max(1, block.used)  # it did not keep up: hold no more than it uses
        elif block.waited or now < block.end:
            self._ask = min(self._most, 2 * block.size)  # it waited: more would have gone

    def _new_block(self, size: int) -> _Block:
        for attempt in range(2):
            if self._connection is None:
                # Connected before the clock is read: the round trip that maps the database's
                # clock onto ours must be the statement's alone.
                self._connection = self._engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT"
                )
            try:
                sent = self._clock()
                reservation = reserve_slots(self._connection, self.key, size, self.rate)
                received = self._clock()
            except (DBAPIError, psycopg.OperationalError) as exc:
                lost = _connection_lost(self._connection, exc)
                self._discard(invalidate=lost)
                # A connection the server dropped (a restart, an idle timeout) is opened
                # again once; any other error is the caller's.
                if attempt or not lost:
                    raise
            else:
                self.reservations += 1
                start = to_local(reservation.start, reservation, sent, received)
                return _Block(
                    start, size, self.interval, self._window(reservation, received - sent, size)
                )
        raise AssertionError("unreachable")

    def _window(self, reservation: Reservation, round_trip: float, size: int) -> float | None:
        """Nobody held the timeline (the block starts at the database's now) and the block is
        smaller than :data:`IDLE_BLOCK_ROUND_TRIPS` round trips of the rate: the process is
        slower than the rate, so it uses its slots in a window of that many round trips, at
        its own pace, instead of holding that much of the timeline (which every other
        dispatcher would then wait for: two of them took turns and went no faster than one).
        Otherwise None: slots ``1/rate`` apart."""
        smoothed = self._round_trip
        self._round_trip = round_trip if smoothed is None else 0.8 * smoothed + 0.2 * round_trip
        window = min(BLOCK_SECONDS, IDLE_BLOCK_ROUND_TRIPS * self._round_trip)
        if reservation.start <= reservation.db_now and size < self.rate * window:
            return window
        return None

    def _discard(self, *, invalidate: bool = False) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            if invalidate:
                connection.invalidate()
            connection.close()


def _connection_lost(connection: Connection, exc: Exception) -> bool:
    """Whether ``exc`` means the server dropped ``connection`` (the statement runs on the
    driver's connection, whose errors SQLAlchemy does not see)."""
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    driver: Any = connection.connection.driver_connection
    return bool(driver is None or driver.broken or driver.closed)


__all__ = [
    "BLOCK_SECONDS",
    "RESERVE_SLOTS",
    "Reservation",
    "SharedTokenBucket",
    "reserve_slots",
    "to_local",
]
