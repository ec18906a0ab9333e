"""The follow-up service standard, pure: business hours, the 8-hour / 2-attempt rule.

Business hours are Monday to Friday, 09:00-17:00 on the program's clock. A no-contact outcome
is retried after its recycle delay, but never later than ``within_business_hours`` business
hours after the attempt; and a task is not closed as unreachable before ``min_attempts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

BUSINESS_START = time(9, 0)
BUSINESS_END = time(17, 0)
BUSINESS_DAYS = frozenset(range(5))  # Monday..Friday


@dataclass(frozen=True)
class FollowUpStandard:
    within_business_hours: float = 8.0
    min_attempts: int = 2

    def effective_max_attempts(self, max_attempts: int) -> int:
        return max(max_attempts, self.min_attempts)


DEFAULT_STANDARD = FollowUpStandard()


def standard_for(definition: Any) -> FollowUpStandard:
    """The campaign's standard: an optional ``follow_up`` block (``within`` a duration of
    business hours, ``min_attempts``) on the definition, else the default 8 hours / 2."""
    block = getattr(definition, "follow_up", None) if definition is not None else None
    if block is None:
        return DEFAULT_STANDARD
    within = getattr(block, "within", None)
    hours = (
        within.total_seconds() / 3600
        if isinstance(within, timedelta)
        else DEFAULT_STANDARD.within_business_hours
    )
    minimum = getattr(block, "min_attempts", None)
    return FollowUpStandard(
        hours, int(minimum) if minimum is not None else DEFAULT_STANDARD.min_attempts
    )


def _day_bounds(day: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    d = day.date()
    start = datetime.combine(d, BUSINESS_START, tzinfo=zone).astimezone(UTC)
    end = datetime.combine(d, BUSINESS_END, tzinfo=zone).astimezone(UTC)
    return start, end


def add_business_hours(at: datetime, hours: float, zone: str) -> datetime:
    """The instant ``hours`` business hours after ``at`` (UTC)."""
    tz = ZoneInfo(zone)
    remaining = timedelta(hours=hours)
    cursor = at.astimezone(UTC)
    for _ in range(3700):  # ten years of days: a guard, never reached for sane figures
        local = cursor.astimezone(tz)
        if local.weekday() in BUSINESS_DAYS:
            start, end = _day_bounds(local, tz)
            if cursor < end:
                begin = max(cursor, start)
                available = end - begin
                if remaining <= available:
                    return begin + remaining
                remaining -= available
        next_day = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=tz)
        cursor = next_day.astimezone(UTC)
    raise ValueError(f"{hours} business hours is too far ahead")


def business_hours_between(start: datetime, end: datetime, zone: str) -> float:
    """Business hours elapsed from ``start`` to ``end`` (0 when end <= start)."""
    if end <= start:
        return 0.0
    tz = ZoneInfo(zone)
    total = timedelta(0)
    day = start.astimezone(tz).date()
    last = end.astimezone(tz).date()
    while day <= last:
        if day.weekday() in BUSINESS_DAYS:
            open_, close = _day_bounds(datetime.combine(day, time(12), tzinfo=tz), tz)
            lo, hi = max(open_, start), min(close, end)
            if hi > lo:
                total += hi - lo
        day += timedelta(days=1)
    return total.total_seconds() / 3600


def recycle_due(at: datetime, delay: timedelta, standard: FollowUpStandard, zone: str) -> datetime:
    """When a no-contact outcome at ``at`` is tried again: after its delay, but no later than
    the standard's business-hour limit."""
    return min(at + delay, add_business_hours(at, standard.within_business_hours, zone))
