"""The follow-up service standard, pure: business hours, the 8-hour / 2-attempt rule.

Business hours are 09:00-17:00 on the program's clock, on its business days (Monday to Friday,
or the working days of the program's holiday calendar: engine/calls/business_days.py; every
function here takes it as ``holidays``, a calendar code or None). A no-contact outcome
is retried after its recycle delay, but never later than ``within_business_hours`` business
hours after the attempt; and a task is not closed as unreachable before ``min_attempts``.

The retry is placed where the member may be called (:func:`schedule_retry`): the member's
calling window (their local 08:00-21:00, narrowed by the campaign) may be closed at the
instant the delay ends or the standard runs out, so the attempt moves to the window's next
opening when that is within the standard, else to the window's last minutes before the
standard runs out. When the window has no opening at all between the attempt and the
standard's limit, the standard cannot be met for that member: :class:`Retry` says so
(``feasible``), and the reports count it apart from the breaches an agent could have avoided.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from engine.calls.business_days import is_business_day

BUSINESS_START = time(9, 0)
BUSINESS_END = time(17, 0)


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
    return _bounds_of(day.date(), zone)


@functools.lru_cache(maxsize=4096)
def _bounds_of(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The day's business hours in UTC: the same few days over and over (a dialer file's
    retries), each worked out once."""
    start = datetime.combine(day, BUSINESS_START, tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day, BUSINESS_END, tzinfo=zone).astimezone(UTC)
    return start, end


def add_business_hours(
    at: datetime, hours: float, zone: str, *, holidays: str | None = None
) -> datetime:
    """The instant ``hours`` business hours after ``at`` (UTC)."""
    tz = ZoneInfo(zone)
    remaining = timedelta(hours=hours)
    cursor = at.astimezone(UTC)
    for _ in range(3700):  # ten years of days: a guard, never reached for sane figures
        local = cursor.astimezone(tz)
        if is_business_day(local.date(), holidays):
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


def business_hours_between(
    start: datetime, end: datetime, zone: str, *, holidays: str | None = None
) -> float:
    """Business hours elapsed from ``start`` to ``end`` (0 when end <= start)."""
    if end <= start:
        return 0.0
    tz = ZoneInfo(zone)
    total = timedelta(0)
    day = start.astimezone(tz).date()
    last = end.astimezone(tz).date()
    while day <= last:
        if is_business_day(day, holidays):
            open_, close = _day_bounds(datetime.combine(day, time(12), tzinfo=tz), tz)
            lo, hi = max(open_, start), min(close, end)
            if hi > lo:
                total += hi - lo
        day += timedelta(days=1)
    return total.total_seconds() / 3600


def recycle_due(
    at: datetime,
    delay: timedelta,
    standard: FollowUpStandard,
    zone: str,
    *,
    holidays: str | None = None,
) -> datetime:
    """When a no-contact outcome at ``at`` is tried again: after its delay, but no later than
    the standard's business-hour limit."""
    limit = add_business_hours(at, standard.within_business_hours, zone, holidays=holidays)
    return min(at + delay, limit)


# The finest placement of a retry inside the calling window (a window shorter than this is
# still found: its opening is the fallback).
RETRY_STEP = timedelta(minutes=15)
# A retry is never "at the same instant" as the attempt it follows.
RETRY_GAP = timedelta(minutes=1)


def standard_deadline(
    at: datetime, standard: FollowUpStandard, zone: str, *, holidays: str | None = None
) -> datetime:
    """The latest instant a retry of an attempt at ``at`` meets the standard: the standard's
    business hours run out at the limit, and no business time passes from there to the next
    business opening (a limit at 17:00 still allows an evening call), so that opening."""
    limit = add_business_hours(at, standard.within_business_hours, zone, holidays=holidays)
    return deadline_at_limit(limit, zone, holidays=holidays)


def deadline_at_limit(limit: datetime, zone: str, *, holidays: str | None = None) -> datetime:
    """:func:`standard_deadline` given the instant its business hours run out (``limit``)."""
    return add_business_hours(limit, 0, zone, holidays=holidays)


@dataclass(frozen=True)
class Retry:
    due: datetime  # when the next attempt is served
    deadline: datetime  # the last instant that meets the standard (standard_deadline)
    feasible: bool  # the calling window opens between the attempt and the deadline


def first_chance(
    at: datetime, deadline: datetime, next_callable: Callable[[datetime], datetime | None]
) -> datetime | None:
    """The first instant after the attempt at ``at`` at which the member may be called, when
    it is no later than ``deadline`` (None: the standard cannot be met)."""
    opens = next_callable(at + RETRY_GAP)
    return opens if opens is not None and opens <= deadline else None


def schedule_retry(
    at: datetime,
    delay: timedelta,
    standard: FollowUpStandard,
    zone: str,
    next_callable: Callable[[datetime], datetime | None],
    *,
    holidays: str | None = None,
) -> Retry:
    """When a no-contact outcome at ``at`` is tried again: after its delay, no later than the
    standard's business-hour limit (program clock ``zone``), inside the calling window.
    ``next_callable(t)`` is the earliest instant ``>= t`` at which the member may be called
    (None: never)."""
    limit = add_business_hours(at, standard.within_business_hours, zone, holidays=holidays)
    deadline = deadline_at_limit(limit, zone, holidays=holidays)
    target = max(min(at + delay, limit), at + RETRY_GAP)
    first = first_chance(at, deadline, next_callable)
    if first is None:
        later = next_callable(target)
        return Retry(later if later is not None else target, deadline, False)
    opens = next_callable(target)
    if opens is not None and opens <= deadline:
        return Retry(opens, deadline, True)
    # The window is shut from the target to the deadline: the latest callable instant before.
    probe = target - RETRY_STEP
    while probe > first:
        if next_callable(probe) == probe:
            return Retry(probe, deadline, True)
        probe -= RETRY_STEP
    return Retry(first, deadline, True)
