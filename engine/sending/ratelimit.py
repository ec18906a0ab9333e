"""A token bucket that never lets more than ``rate`` messages per second through.

It is a GCRA (generic cell rate algorithm) scheduler: each request reserves the next free slot,
slots are ``1/rate`` seconds apart, and at most ``burst`` slots may fall at the same instant
after an idle spell (a fractional burst is a tolerance: a late caller may take its slot up to
``(burst - 1) / rate`` seconds early next time, catching up instead of losing the time). So in
ANY interval of length T at most ``rate * T + burst`` slots fall, and over a long run the rate
is exactly ``rate``. With ``burst=1`` (the default) the slots are evenly spaced: what a Twilio
long code (about 1 SMS/s) or any provider's per-second limit needs.

Reservation happens under a lock and the sleep outside it, so threads sharing one bucket are
served in order and never oversubscribe it. It paces one process: on PostgreSQL, where any
number of dispatchers share the queue, engine/sending/shared_ratelimit.py shares the slots
through the database instead. The clock and the sleep are injected: the tests run
it on a fake clock; the real rate is measured by bench/bench_dispatch.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class SlotTooFarError(Exception):
    """The slot reserved lies further ahead than the caller would wait (``wait`` seconds)."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"the next slot is {wait:.1f} s away")
        self.wait = wait


class SlotLimiter:
    """What every rate limit here shares: ``rate`` slots a second, ``1/rate`` apart, with a
    tolerance of ``burst`` slots; :meth:`reserve` (the subclass's) hands out the slots and
    :meth:`acquire` waits for them. The clock and the sleep are injected."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"a rate must be > 0 messages per second, got {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = burst
        self.interval = 1.0 / self.rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()

    def reserve(self, n: int = 1) -> float:
        """Reserve ``n`` slots; return the clock time of the last one."""
        raise NotImplementedError

    def acquire(
        self,
        n: int = 1,
        *,
        max_wait: float | None = None,
        meanwhile: Callable[[float], None] | None = None,
    ) -> float:
        """Block until ``n`` slots are ours; return the seconds waited. With ``max_wait``,
        slots further off than that raise :class:`SlotTooFarError` at once, unused: they stay
        reserved, so the limit only goes slower for them, never past its rate. ``meanwhile``
        is given the wait first (the dispatcher settles and writes what came back meanwhile);
        it must return within that many seconds, and the rest of the wait is slept."""
        slot = self.reserve(n)
        wait = slot - self._clock()
        if max_wait is not None and wait > max_wait:
            raise SlotTooFarError(wait)
        if wait > 0:
            if meanwhile is not None:
                meanwhile(wait)
            left = slot - self._clock()
            if left > 0:
                self._sleep(left)
            return wait
        return 0.0


class TokenBucket(SlotLimiter):
    """The GCRA of the module docstring, in this process."""

    _tat: float | None = None  # theoretical arrival time of the next slot

    @property
    def _tolerance(self) -> float:
        return (self.burst - 1) * self.interval

    def reserve(self, n: int = 1) -> float:
        """Reserve ``n`` slots; return the clock time of the last one (may be in the past:
        then it is now)."""
        if n < 1:
            raise ValueError(f"reserve at least one slot, not {n}")
        with self._lock:
            now = self._clock()
            tat = now if self._tat is None else self._tat
            slot = now
            for _ in range(n):
                slot = max(now, tat - self._tolerance)
                tat = max(tat, slot) + self.interval
            self._tat = tat
            return slot

    def next_free_in(self) -> float:
        """Seconds until a slot would be free now (0 when one is)."""
        with self._lock:
            if self._tat is None:
                return 0.0
            return max(0.0, self._tat - self._tolerance - self._clock())


__all__ = ["SlotLimiter", "SlotTooFarError", "TokenBucket"]
