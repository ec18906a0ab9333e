"""engine.sending.in_flight: calls kept in flight on a slow provider, one at a time on a fast one.

The slow calls sleep a few ms (past FAST_ANSWER, and a sleep never ends early); a fast one
is timed by a fake timer, since a busy machine can make any real call slow. The assertions
are about which thread ran the calls and how many overlapped, never about how long anything
took."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from engine.sending.in_flight import FAST_ANSWER, Done, InFlight

SLOW = FAST_ANSWER * 5


class FakeTimer:
    """Time that moves only when told (a fast provider's calls take ``step`` each)."""

    def __init__(self, step: float = FAST_ANSWER / 100) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step / 2  # read twice per call: before and after
        return self.now


class Provider:
    """Records the thread of every call and the most calls running at once."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.threads: list[int] = []

    def __call__(self, value: Any) -> Any:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.append(threading.get_ident())
        try:
            time.sleep(self.delay)
            if isinstance(value, Exception):
                raise value
            return value * 10
        finally:
            with self.lock:
                self.running -= 1


def _run_all(sender: InFlight[int], provider: Provider, values: list[Any]) -> list[Done[int]]:
    """What a dispatcher's sending loop does: settle what finished, wait for room, start."""
    done: list[Done[int]] = []
    for token, value in enumerate(values):
        done.extend(sender.finished())
        done.extend(sender.room())
        sender.start(token, provider, value)
    done.extend(sender.drain())
    return done


def test_a_fast_provider_is_called_on_the_callers_thread_one_at_a_time() -> None:
    provider = Provider()
    sender: InFlight[int] = InFlight(8, timer=FakeTimer())
    done = _run_all(sender, provider, list(range(50)))
    assert sorted(d.token for d in done) == list(range(50))
    assert all(d.result == d.token * 10 and d.error is None for d in done)
    assert set(provider.threads) == {threading.get_ident()}
    assert provider.most == 1 and sender.peak == 1 and sender.window == 1


def test_a_slow_provider_gets_calls_in_flight_up_to_the_limit_each_settled_once() -> None:
    provider = Provider(SLOW)
    sender: InFlight[int] = InFlight(4)
    done = _run_all(sender, provider, list(range(40)))
    sender.close()
    assert sorted(d.token for d in done) == list(range(40))  # every call back exactly once
    assert all(d.result == d.token * 10 for d in done)
    # The first call shows the provider is slow; after it, several overlap, never over 4.
    assert provider.threads[0] == threading.get_ident()
    assert 4 >= provider.most > 1
    assert sender.peak == provider.most
    assert sender.window == 4 and sender.latency >= FAST_ANSWER


def test_errors_come_back_with_their_token() -> None:
    provider = Provider(SLOW)
    sender: InFlight[int] = InFlight(3)
    values: list[Any] = [1, ValueError("bad 1"), 2, KeyError("bad 3"), 4]
    done = {d.token: d for d in _run_all(sender, provider, values)}
    sender.close()
    assert done[0].result == 10 and done[2].result == 20 and done[4].result == 40
    assert isinstance(done[1].error, ValueError) and done[1].result is None
    assert isinstance(done[3].error, KeyError)


def test_room_waits_until_a_call_finishes() -> None:
    gate = threading.Event()
    sender: InFlight[str] = InFlight(2)
    sender.latency = 1.0  # known slow: the pool from the first call
    sender.start("a", gate.wait)
    sender.start("b", gate.wait)
    waited: list[Done[str]] = []
    waiter = threading.Thread(target=lambda: waited.extend(sender.room()))
    waiter.start()
    waiter.join(0.05)
    assert waiter.is_alive()  # two in flight, window 2: no room
    gate.set()
    waiter.join(5)
    assert not waiter.is_alive()
    assert {d.token for d in waited} | {d.token for d in sender.drain()} == {"a", "b"}
    sender.close()


def test_answers_fast_again_bring_the_calls_back_to_the_callers_thread() -> None:
    provider = Provider(SLOW)
    sender: InFlight[int] = InFlight(4)
    _run_all(sender, provider, list(range(10)))
    assert sender.window == 4
    provider.delay = 0.0
    provider.threads.clear()
    sender._timer = FakeTimer()  # from now on every answer comes back fast
    _run_all(sender, provider, list(range(60)))
    sender.close()
    assert sender.window == 1
    assert provider.threads[-1] == threading.get_ident()


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        InFlight(0)
