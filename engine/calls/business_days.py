"""Business days, pure: Monday to Friday, or a program's public-holiday calendar.

A program may name one calendar of the maintained ``holidays`` library (``US``, ``US-CA``,
``CN``, ``GB-SCT``...: a country code, optionally a subdivision after a hyphen). Its business
days are the calendar's working days: not a public holiday, not the country's weekend, and a
weekend day the country works to make up for a holiday (China's make-up Saturdays) is one. With
no calendar, Monday to Friday. The follow-up standard, callback fallback, calling-plan targets
and the reports that judge them all count business days here.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import Any

NO_CALENDAR_DAYS = frozenset(range(5))  # Monday..Friday


class UnknownCalendarError(ValueError):
    """A calendar code the holidays library does not know."""


def normalise_calendar(code: str) -> str:
    """``code`` as stored (``us-ca`` -> ``US-CA``), after checking that the library knows it."""
    cleaned = code.strip().upper().replace("_", "-")
    country, _, subdivision = cleaned.partition("-")
    supported = _supported()
    if country not in supported:
        raise UnknownCalendarError(
            f"holiday calendar {code!r}: no country {country!r} in the holidays library "
            "(use an ISO 3166 code such as US, GB, CN, DE)"
        )
    if subdivision and subdivision not in supported[country]:
        known = ", ".join(supported[country][:12]) or "none"
        more = ", ..." if len(supported[country]) > 12 else ""
        raise UnknownCalendarError(
            f"holiday calendar {code!r}: {country} has no subdivision {subdivision!r} "
            f"(it has: {known}{more})"
        )
    return f"{country}-{subdivision}" if subdivision else country


# The library is imported on first use: it takes a fifth of a second, which every CLI command
# would otherwise pay.


@lru_cache(maxsize=1)
def _supported() -> dict[str, list[str]]:
    import holidays

    return dict(holidays.list_supported_countries())


@lru_cache(maxsize=64)
def _calendar(code: str) -> Any:
    import holidays

    country, _, subdivision = code.partition("-")
    return holidays.country_holidays(country, subdiv=subdivision or None)


def is_business_day(day: date, calendar: str | None) -> bool:
    """Whether ``day`` is a business day: a working day of ``calendar`` (a stored code), or
    Monday to Friday without one."""
    if calendar is None:
        return day.weekday() in NO_CALENDAR_DAYS
    return bool(_calendar(calendar).is_working_day(day))


def holiday_name(day: date, calendar: str | None) -> str | None:
    """The public holiday on ``day`` in ``calendar`` (None: none, or no calendar)."""
    if calendar is None:
        return None
    name = _calendar(calendar).get(day)
    return str(name) if name else None
