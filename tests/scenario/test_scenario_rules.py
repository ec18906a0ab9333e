"""The scenario's own rules, checked on their own: a wrong rule would blame the engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from scenario_invariants import _in_window, _over_cap, step_due_times
from scenario_world import FALL_BACK, fire_times, local

NY = ZoneInfo("America/New_York")


def test_steps_come_due_after_the_previous_step_at_their_local_time() -> None:
    enrolled = datetime(2026, 9, 7, 19, 0, tzinfo=UTC)  # 15:00 in New York
    steps = [{"delay": "0d", "at": "09:30"}, {"delay": "7d", "at": "11:00"}, {"delay": "14d"}]
    due = step_due_times(steps, enrolled, "America/New_York")
    # 09:30 has passed on the day of enrolment: the next morning.
    assert due[0] == datetime(2026, 9, 8, 9, 30, tzinfo=NY)
    assert due[1] == datetime(2026, 9, 15, 11, 0, tzinfo=NY)
    assert due[2] == due[1] + timedelta(days=14)


def test_a_repeated_wall_time_is_one_fire() -> None:
    fires = fire_times("points-expiring", local(FALL_BACK, 23))
    on_the_night = [f for f in fires if f.date() == FALL_BACK]
    assert len(on_the_night) == 1 and len(fires) == 8  # Sundays from 13 Sep to 1 Nov


def test_thirteen_weekly_fires_in_ninety_days() -> None:
    end = local(datetime(2026, 12, 5).date(), 23)
    assert len(fire_times("activate-new", end)) == 13


def test_a_cap_counts_a_rolling_window() -> None:
    start = datetime(2026, 9, 7, tzinfo=UTC)
    times = [start + timedelta(days=d) for d in (0, 2, 4, 8)]
    assert _over_cap(times, 3, timedelta(days=7)) is None
    assert _over_cap([*times[:3], start + timedelta(days=6)], 3, timedelta(days=7)) is not None


def test_windows_are_read_in_the_recipients_zone() -> None:
    at = datetime(2026, 9, 8, 2, 0, tzinfo=UTC)  # 22:00 in New York, 12:00 in Sydney
    assert _in_window(at, "Australia/Sydney", {"start": "09:00", "end": "20:00"}) is None
    assert "outside 08:00-21:00" in (_in_window(at, "America/New_York", None) or "")
