"""Requests kept in flight to a slow provider, so that its latency does not set the send rate.

A dispatcher worker sends one message at a time. Against a provider that answers in 100 ms
(SendGrid and Twilio from most networks answer in 50-300 ms) that is 10 messages a second,
whatever the configured rate. :class:`InFlight` starts each send on a small pool of threads
instead, up to ``limit`` at once, while the caller goes on pacing (the rate limit's slot is
taken before each start) and deciding; the caller settles each outcome on its own thread, in
whatever order the answers come.

A provider that answers within :data:`FAST_ANSWER` (a local server, a test fake, the file
sink) is called on the caller's thread as before: handing each message to another thread
costs about a quarter of the throughput there and gains nothing. The choice follows the
provider's recent answer times, so a worker switches to the pool after its first slow answer
and back once answers are fast again.

Each pool thread keeps its own keep-alive connection (``PooledHttpClient`` and the Twilio
client's session pool hold one per thread), so ``limit`` is also the number of connections a
worker opens to the provider.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from queue import Empty, SimpleQueue
from typing import Any, Generic, NamedTuple, TypeVar

Token = TypeVar("Token")

# An answer within 2 ms is as quick as building and recording a message: threads would cost
# more than they hide.
FAST_ANSWER = 0.002
# Weight of the newest answer time in the running average (about the last ten answers).
_SMOOTHING = 0.2


class Done(NamedTuple, Generic[Token]):
    """One finished call: the caller's token, and the call's result or the error it raised."""

    token: Token
    result: Any
    error: BaseException | None


class InFlight(Generic[Token]):
    """Up to ``limit`` calls at once on a slow provider, one at a time on a fast one.

    ``start(token, call, *args)`` makes the call (now, or on a pool thread); ``finished()``
    yields the calls done so far without waiting; ``room()`` waits until another call may
    start; ``drain()`` waits for all of them. Every call started comes back exactly once
    through one of those three, as a :class:`Done` with its token. Not thread-safe: one
    caller thread drives it."""

    def __init__(
        self, limit: int, *, name: str = "send", timer: Callable[[], float] = time.perf_counter
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.limit = limit
        self.name = name
        self._timer = timer  # seconds, for answer times
        self.latency = 0.0  # running average of answer times, seconds
        self.peak = 0  # the most calls that were in flight at once
        self._pool: ThreadPoolExecutor | None = None
        # Each pool call puts its Done here as it finishes: the caller takes what came back
        # without polling every call in flight (and one wait is one queue read, not a waiter
        # installed in each future).
        self._finished: SimpleQueue[Done[Token] | _Escaped] = SimpleQueue()
        self._in_flight = 0  # calls started on the pool and not yet taken from _finished
        self._done: list[Done[Token]] = []

    @property
    def window(self) -> int:
        """How many calls may be in flight now."""
        return 1 if self.latency < FAST_ANSWER else self.limit

    def start(self, token: Token, call: Callable[..., Any], *args: Any) -> None:
        if self.window == 1 and not self._in_flight:
            self._done.append(self._timed(token, call, args))
            self.peak = max(self.peak, 1)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.limit, thread_name_prefix=self.name)
        self._pool.submit(self._post, token, call, args)
        self._in_flight += 1
        self.peak = max(self.peak, self._in_flight)

    def finished(self) -> Iterator[Done[Token]]:
        """The calls finished so far, without waiting for the others."""
        self._collect(block=False)
        yield from self._take()

    @property
    def busy(self) -> bool:
        """Whether a call is in flight."""
        return bool(self._in_flight)

    def within(self, timeout: float) -> Iterator[Done[Token]]:
        """Waits up to ``timeout`` seconds for a call in flight to finish (not at all when none
        is in flight); yields those that finished."""
        if self._in_flight and timeout > 0:
            with suppress(Empty):
                self._took(self._finished.get(timeout=timeout))
        yield from self.finished()

    def room(self) -> Iterator[Done[Token]]:
        """Waits until fewer than ``window`` calls are in flight; yields those that finished."""
        while self._in_flight >= self.window:
            self._collect(block=True)
        yield from self.finished()

    def drain(self) -> Iterator[Done[Token]]:
        """Waits for every call in flight; yields them all."""
        while self._in_flight:
            self._collect(block=True)
        yield from self._take()

    def close(self) -> None:
        """Waits for calls in flight (their outcomes are dropped) and stops the pool."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._finished = SimpleQueue()
        self._in_flight = 0
        self._done.clear()

    def _timed(self, token: Token, call: Callable[..., Any], args: tuple[Any, ...]) -> Done[Token]:
        started = self._timer()
        try:
            done = Done(token, call(*args), None)
        except Exception as exc:  # the caller decides what each error means
            done = Done(token, None, exc)
        # One writer at a time is enough for an average: a lost update only delays a switch.
        elapsed = self._timer() - started
        self.latency += _SMOOTHING * (elapsed - self.latency)
        return done

    def _post(self, token: Token, call: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """On a pool thread: the call, its Done queued for the caller."""
        try:
            done = self._timed(token, call, args)
        except BaseException as exc:  # not the call's own error (an interrupt): the caller's
            self._finished.put(_Escaped(exc))
            raise
        self._finished.put(done)

    def _collect(self, *, block: bool) -> None:
        if not self._in_flight:
            return
        if block:
            self._took(self._finished.get())
        while self._in_flight:
            try:
                self._took(self._finished.get_nowait())
            except Empty:
                return

    def _took(self, item: Done[Token] | _Escaped) -> None:
        self._in_flight -= 1
        if isinstance(item, _Escaped):
            raise item.error
        self._done.append(item)

    def _take(self) -> Iterator[Done[Token]]:
        done, self._done = self._done, []
        yield from done


class _Escaped(NamedTuple):
    """What a pool call raised that is not an ``Exception`` (re-raised on the caller's
    thread, as ``Future.result()`` did)."""

    error: BaseException
