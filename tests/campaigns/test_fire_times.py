"""Fire times (pure): one fire per local calendar fire on DST days, in every zone the examples
and the demo use; the daemon's trigger agrees with the tick's search; re-entry bounds."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.fire_times import LocalCron, LocalCronTrigger
from engine.schedules import reentry_bound, skip_reason

# The campaign examples' zone and the demo's program/member zones.
ZONES = [
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Toronto",
    "America/Vancouver",
    "America/Mexico_City",
    "America/Bogota",
    "Pacific/Honolulu",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Madrid",
    "Asia/Shanghai",
    "Asia/Hong_Kong",
    "Asia/Singapore",
    "Asia/Taipei",
    "Australia/Sydney",
]
YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)


def _fires(cron: LocalCron, start: datetime, end: datetime) -> list[datetime]:
    fires = []
    for instant in cron.fires_from(start):
        if instant >= end:
            break
        fires.append(instant)
    return fires


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("wall", ["30 1", "30 2", "0 9", "0 0"])
def test_a_daily_schedule_fires_once_per_local_day_all_year(zone: str, wall: str) -> None:
    cron = LocalCron(f"{wall} * * *", zone)
    fires = _fires(cron, YEAR_START, YEAR_START + timedelta(days=365))
    local_days = [f.astimezone(ZoneInfo(zone)).date() for f in fires]
    assert len(local_days) == len(set(local_days)), "a local day fired twice"
    first = local_days[0]
    assert local_days == [first + timedelta(days=i) for i in range(len(local_days))], "a gap"
    assert fires == sorted(fires)
    minute, hour = (int(v) for v in wall.split())
    for instant in fires:
        local = instant.astimezone(ZoneInfo(zone))
        # The wall time itself, or (in a spring-forward gap) the first instant after the jump.
        assert (local.hour, local.minute) == (hour, minute) or local.minute == 0


def test_new_york_fall_back_fires_half_past_one_once() -> None:
    cron = LocalCron("30 1 * * *", "America/New_York")
    day = _fires(cron, datetime(2026, 11, 1, 4, tzinfo=UTC), datetime(2026, 11, 1, 12, tzinfo=UTC))
    assert day == [datetime(2026, 11, 1, 5, 30, tzinfo=UTC)]  # 01:30 EDT, not 01:30 EST too
    # At any moment of the repeated hour the latest fire is that first one.
    for minutes in range(0, 120, 10):
        at = datetime(2026, 11, 1, 5, 30, tzinfo=UTC) + timedelta(minutes=minutes)
        assert cron.latest_fire(at) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)


def test_spring_forward_gap_fires_at_the_jump() -> None:
    cron = LocalCron("30 2 * * *", "America/New_York")
    fires = _fires(cron, datetime(2026, 3, 7, 12, tzinfo=UTC), datetime(2026, 3, 9, 12, tzinfo=UTC))
    # 2026-03-08 02:30 does not exist: it fires at 03:00 EDT (07:00 UTC), the jump.
    jump, next_day = datetime(2026, 3, 8, 7, 0, tzinfo=UTC), datetime(2026, 3, 9, 6, 30, tzinfo=UTC)
    assert fires == [jump, next_day]


def test_the_daemon_trigger_fires_like_the_tick_on_the_fall_back_day() -> None:
    trigger = LocalCronTrigger("30 1 * * *", "America/New_York")
    previous, now = None, datetime(2026, 10, 31, 12, tzinfo=UTC)
    fires = []
    for _ in range(3):
        previous = trigger.get_next_fire_time(previous, now)
        assert previous is not None
        fires.append(previous.astimezone(UTC))
        now = previous
    assert fires == [
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
        datetime(2026, 11, 2, 6, 30, tzinfo=UTC),
        datetime(2026, 11, 3, 6, 30, tzinfo=UTC),
    ]


def test_the_trigger_refuses_what_a_crontab_cannot_be() -> None:
    with pytest.raises(ValueError, match="expected 5"):
        LocalCronTrigger("0 9 * *", "UTC")


@settings(max_examples=150, deadline=None)
@given(
    zone=st.sampled_from(["America/New_York", "Europe/London", "Australia/Sydney"]),
    cron=st.sampled_from(["0 9 * * MON", "30 1 * * *", "*/20 1-3 * * SUN", "0 0 1 * *"]),
    offset=st.integers(min_value=0, max_value=365 * 24 * 60),
)
def test_latest_and_next_fire_bracket_every_instant(zone: str, cron: str, offset: int) -> None:
    schedule = LocalCron(cron, zone)
    at = YEAR_START + timedelta(minutes=offset, seconds=7)
    latest = schedule.latest_fire(at)
    assert latest is not None and latest <= at
    following = schedule.next_fire(latest)
    assert following is not None and following > at


def test_reentry_counts_whole_local_days_and_fire_instants() -> None:
    # Monday 2026-03-16 09:00 EDT, two weeks after 2026-03-02 09:00 EST (14 days minus 1 h).
    fire = datetime(2026, 3, 16, 13, 0, tzinfo=UTC)
    bound = reentry_bound(fire, timedelta(days=14), "America/New_York")
    # Blocked from the start of local 2026-03-03 on: the 2026-03-02 fire is not.
    assert bound.inclusive and bound.since == datetime(2026, 3, 3, 5, 0, tzinfo=UTC)
    assert datetime(2026, 3, 2, 14, 0, tzinfo=UTC) < bound.since
    hours = reentry_bound(fire, timedelta(hours=36), "America/New_York")
    assert not hours.inclusive and hours.since == fire - timedelta(hours=36)
    assert date(2026, 3, 3) == bound.since.astimezone(ZoneInfo("America/New_York")).date()


def test_skip_reasons() -> None:
    fire = datetime(2026, 1, 1, 14, 0, tzinfo=UTC)
    june = datetime(2026, 6, 15, 14, 0, tzinfo=UTC)
    grace = timedelta(hours=1)
    assert skip_reason(fire, at=june, first_seen=june, grace=grace) == "165 days late, grace 1h"
    tuesday = fire + timedelta(hours=25)
    assert skip_reason(fire, at=tuesday, first_seen=fire, grace=grace) == "25 h late, grace 1h"
    assert skip_reason(fire, at=fire + timedelta(minutes=59), first_seen=fire, grace=grace) is None
    late_seen = skip_reason(
        fire, at=fire + timedelta(minutes=30), first_seen=fire + timedelta(minutes=20), grace=grace
    )
    assert late_seen is not None and "first seen at 2026-01-01T14:20:00+00:00" in late_seen
