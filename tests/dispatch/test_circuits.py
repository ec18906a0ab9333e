"""engine/sending/circuits.py on both databases: open, wait, probe, close."""

from __future__ import annotations

from datetime import timedelta

from engine.app import App
from engine.sending.circuits import (
    MAX_WAIT,
    Circuit,
    circuit_of,
    close,
    open_circuits,
    trip,
    wait_after,
)
from engine.testing.fakes import FrozenClock

KEY = "email:sendgrid:rewards@example.com"


def _trip(
    app: App, clock: FrozenClock, error: str = "503", retry_after: float | None = None
) -> Circuit:
    with app.sessions() as session, session.begin():
        return trip(
            session,
            KEY,
            channel="email",
            provider="sendgrid",
            at=clock.now(),
            error=error,
            base=timedelta(minutes=1),
            retry_after=retry_after,
        )


def test_wait_doubles_up_to_the_cap_and_honours_the_provider() -> None:
    base = timedelta(minutes=1)
    assert [wait_after(n, base, None) for n in (1, 2, 3, 4)] == [
        timedelta(minutes=m) for m in (1, 2, 4, 8)
    ]
    assert wait_after(20, base, None) == MAX_WAIT
    assert wait_after(1, base, 600) == timedelta(seconds=600)


def test_a_failed_probe_counts_a_failure_of_the_same_moment_does_not(
    app: App, clock: FrozenClock
) -> None:
    opened = _trip(app, clock)
    assert (opened.failures, opened.retry_at) == (1, clock.now() + timedelta(minutes=1))
    # Another request of the same moment failing: the same wait, no second failure.
    again = _trip(app, clock, "connection refused")
    assert (again.failures, again.retry_at) == (1, opened.retry_at)
    assert again.last_error == "connection refused"
    # A Retry-After longer than the wait moves the next probe later.
    later = _trip(app, clock, retry_after=300)
    assert later.retry_at == clock.now() + timedelta(seconds=300) and later.failures == 1

    clock.advance(timedelta(seconds=300))
    probe = _trip(app, clock)  # the probe failed
    assert probe.failures == 2 and probe.retry_at == clock.now() + timedelta(minutes=2)
    assert probe.opened_at == opened.opened_at

    with app.sessions() as session:
        assert circuit_of(session, KEY) == probe
        assert open_circuits(session) == [probe]
    with app.sessions() as session, session.begin():
        assert close(session, KEY) is True
        assert close(session, KEY) is False
    with app.sessions() as session:
        assert circuit_of(session, KEY) is None
