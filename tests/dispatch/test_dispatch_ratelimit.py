"""The token bucket never lets more than rate * T + burst slots into any interval of length T."""

from __future__ import annotations

import itertools
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.sending.ratelimit import SlotTooFarError, TokenBucket


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds


def _max_in_window(times: list[float], width: float) -> int:
    best, start = 0, 0
    for end in range(len(times)):
        while times[end] - times[start] >= width - 1e-9:
            start += 1
        best = max(best, end - start + 1)
    return best


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=500),
    burst=st.integers(min_value=1, max_value=5),
    idles=st.lists(st.floats(min_value=0, max_value=3), min_size=1, max_size=80),
)
def test_never_more_than_the_rate_in_any_window(
    rate: float, burst: int, idles: list[float]
) -> None:
    time = FakeTime()
    bucket = TokenBucket(rate, burst=burst, clock=time.clock, sleep=time.sleep)
    granted: list[float] = []
    for idle in idles:
        time.now += idle  # the caller does other work in between
        bucket.acquire()
        granted.append(time.now)
    for width in (1.0 / rate, 1.0, 2.5, 10.0):
        assert _max_in_window(granted, width) <= rate * width + burst + 1e-6, (width, granted)


def test_a_batch_waits_for_all_its_slots() -> None:
    time = FakeTime()
    bucket = TokenBucket(100, clock=time.clock, sleep=time.sleep)
    start = time.now
    bucket.acquire(50)  # 50 slots 10 ms apart: the last one is 490 ms away
    assert time.now - start == pytest.approx(0.49)
    bucket.acquire(1)
    assert time.now - start == pytest.approx(0.50)


def test_a_slot_further_off_than_the_caller_waits_is_refused_at_once() -> None:
    time = FakeTime()
    bucket = TokenBucket(1, clock=time.clock, sleep=time.sleep)
    start = time.now
    assert bucket.acquire(max_wait=0.5) == 0.0
    with pytest.raises(SlotTooFarError) as refused:
        bucket.acquire(max_wait=0.5)
    assert refused.value.wait == pytest.approx(1.0) and time.now == start  # nothing slept
    # The refused slot stays reserved: the limit only goes slower for it.
    assert bucket.acquire(max_wait=2.0) == pytest.approx(2.0)


@settings(max_examples=100, deadline=None)
@given(rate=st.floats(min_value=1, max_value=1000), count=st.integers(min_value=2, max_value=300))
def test_back_to_back_requests_are_evenly_spaced(rate: float, count: int) -> None:
    time = FakeTime()
    bucket = TokenBucket(rate, clock=time.clock, sleep=time.sleep)
    stamps = []
    for _ in range(count):
        bucket.acquire()
        stamps.append(time.now)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) == pytest.approx(1 / rate, rel=1e-6)
    # Over the run: exactly the rate, never above.
    assert (count - 1) / (stamps[-1] - stamps[0]) == pytest.approx(rate, rel=1e-6)


def test_threads_sharing_a_bucket_never_get_the_same_slot() -> None:
    time = FakeTime()
    lock = threading.Lock()
    bucket = TokenBucket(10, clock=time.clock, sleep=lambda s: None)
    slots: list[float] = []

    def take() -> None:
        for _ in range(50):
            slot = bucket.reserve()
            with lock:
                slots.append(slot)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    slots.sort()
    assert len(slots) == 200
    assert all(b - a == pytest.approx(0.1) for a, b in itertools.pairwise(slots))


def test_bad_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="rate must be > 0"):
        TokenBucket(0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1, burst=0)
