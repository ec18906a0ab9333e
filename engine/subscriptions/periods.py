"""The period a delivery reports on, from its fire time, in the program's zone (pure).

Bounds are local midnights turned into UTC instants (``wall_to_instant``, DST-safe), so "last
calendar month" for a fire at 07:00 on 1 November in London is 1 October 00:00 BST to
1 November 00:00 GMT: 31 days and one hour.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from engine.fire_times import wall_to_instant
from engine.reports.common import Period


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return wall_to_instant(datetime(day.year, day.month, day.day), zone)


def report_period(kind: str, *, fire: datetime, timezone: str) -> Period:
    """[start, end) in UTC for ``kind`` (a schema PERIODS value) as seen at ``fire``; the
    label is in local dates, end inclusive ("2026-10-01..2026-10-31")."""
    zone = ZoneInfo(timezone)
    today = fire.astimezone(zone).date()
    first_of_month = today.replace(day=1)
    if kind == "last_calendar_month":
        end_day = first_of_month
        start_day = (first_of_month - timedelta(days=1)).replace(day=1)
        end = _midnight(end_day, zone)
    elif kind == "last_week":
        end_day = today - timedelta(days=today.weekday())  # this week's Monday
        start_day = end_day - timedelta(days=7)
        end = _midnight(end_day, zone)
    elif kind == "month_to_date":
        start_day, end_day = first_of_month, today + timedelta(days=1)
        end = fire
    else:
        raise ValueError(f"unknown period {kind!r}")
    start = _midnight(start_day, zone)
    last_day = end_day - timedelta(days=1)
    return Period(start, end, f"{start_day.isoformat()}..{last_day.isoformat()}")


__all__ = ["report_period"]
