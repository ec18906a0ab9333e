"""--period of every report: a year, a month, a day, a date range or the last N days.

Pure (no SQLAlchemy): the CLI reads PERIOD_HELP when it declares the report options, and
importing this costs a command nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from engine.errors import InputError


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC, and how the user wrote it."""

    start: datetime
    end: datetime
    label: str

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end


_DAYS = re.compile(r"^(\d{1,4})d$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_YEAR = re.compile(r"^(\d{4})$")

PERIOD_HELP = (
    "Only this period (UTC): 2026, 2026-03, 2026-03-15, 2026-01-01..2026-03-31 "
    "(dates inclusive) or 30d (the last 30 days)."
)


def parse_period(value: str | None, *, at: datetime) -> Period | None:
    """--period: a year, a month, a day, an inclusive date range A..B, or the last N days."""
    if value is None:
        return None
    text = value.strip()
    try:
        if match := _DAYS.match(text):
            days = int(match.group(1))
            if days < 1:
                raise ValueError("at least 1 day")
            return Period(at - timedelta(days=days), at, text)
        if ".." in text:
            first, last = (part.strip() for part in text.split("..", 1))
            start = _day(date.fromisoformat(first))
            end = _day(date.fromisoformat(last)) + timedelta(days=1)
            if end <= start:
                raise ValueError("the range ends before it starts")
            return Period(start, end, text)
        if match := _MONTH.match(text):
            year, month = int(match.group(1)), int(match.group(2))
            start = datetime(year, month, 1, tzinfo=UTC)
            end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
            return Period(start, end, text)
        if match := _YEAR.match(text):
            year = int(match.group(1))
            return Period(
                datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC), text
            )
        day = date.fromisoformat(text)
        return Period(_day(day), _day(day) + timedelta(days=1), text)
    except ValueError as exc:
        raise InputError(
            f"--period {value!r} is not a period ({exc}); use 2026, 2026-03, 2026-03-15, "
            "2026-01-01..2026-03-31 or 30d"
        ) from exc


def _day(value: date) -> datetime:
    return datetime(value.year, value.month, value.day, tzinfo=UTC)
