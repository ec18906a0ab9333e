"""Clocks for tests that run the real daemon in a subprocess: real time passes, at another
instant (a FrozenClock would stop the daemon's time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class ShiftedClock:
    """The system clock moved by a fixed offset."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    @classmethod
    def before_minute(cls, seconds: float) -> ShiftedClock:
        """A clock that reads ``seconds`` before a minute boundary now, so a test of a cron
        schedule ("* * * * *") sees the minute turn in ``seconds`` instead of up to a minute.

        Behind the wall clock (by up to a minute), never ahead: the daemon dates its first
        tick by this clock and APScheduler waits for that date on the wall clock."""
        real = datetime.now(UTC)
        boundary = real.replace(second=0, microsecond=0)
        return cls(boundary - timedelta(seconds=seconds) - real)
