"""Independent oracles for the policy tests: brute-force scans over the UTC timeline that use
nothing from engine.policy except the data they are given."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

# "localtime" is whatever the machine is set to; leave it out so failures reproduce anywhere.
ALL_ZONES = sorted(zone for zone in available_timezones() if zone != "localtime")
MINUTE = timedelta(minutes=1)
LEGAL = (time(8), time(21), frozenset(range(7)))


def inside(instant: datetime, zone: str, start: time, end: time, days: frozenset[int]) -> bool:
    """Is the wall clock in ``zone`` at ``instant`` within [start, end) on an allowed day?"""
    local = instant.astimezone(ZoneInfo(zone))
    return local.weekday() in days and start <= local.time().replace(tzinfo=None) < end


def inside_all(
    instant: datetime, zones: list[str], start: time, end: time, days: frozenset[int]
) -> bool:
    return all(inside(instant, zone, start, end, days) for zone in zones)


def ceil_minute(instant: datetime) -> datetime:
    floor = instant.replace(second=0, microsecond=0)
    return floor if floor == instant else floor + MINUTE


@cache
def transitions(zone: str, year: int) -> tuple[datetime, ...]:
    """UTC instants in ``year`` at which ``zone``'s offset changes: hourly scan, then minutes.

    Post-1970 tzdata transitions fall on whole minutes, which the minute scan relies on."""
    tz = ZoneInfo(zone)
    found: list[datetime] = []
    hour = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    previous = hour.astimezone(tz).utcoffset()
    while hour < end:
        following = hour + timedelta(hours=1)
        offset = following.astimezone(tz).utcoffset()
        if offset != previous:
            minute = hour
            while minute.astimezone(tz).utcoffset() == previous:
                minute += MINUTE
            found.append(minute)
            previous = offset
        hour = following
    return tuple(found)
