"""Frequency caps: at most ``max`` contacts per participant in any rolling ``per``.

A contact at time ``c`` counts at instant ``at`` while ``at - per < c``: it leaves the window
exactly ``per`` after it happened. Contacts recorded *after* ``at`` (another worker's clock ran
ahead) are counted too, so a cap can only err on the side of fewer messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol


class CapSpec(Protocol):
    """Anything shaped like a campaign file's ``frequency_cap``."""

    @property
    def max(self) -> int: ...

    @property
    def per(self) -> timedelta: ...


@dataclass(frozen=True)
class FrequencyCap:
    """At most ``max`` contacts in any rolling ``per`` (``max=0`` forbids every contact)."""

    max: int
    per: timedelta

    def __post_init__(self) -> None:
        if self.max < 0:
            raise ValueError(f"a frequency cap's max must be >= 0, got {self.max}")
        if self.per <= timedelta(0):
            raise ValueError(f"a frequency cap's period must be positive, got {self.per}")


def within_cap(contact_times: Sequence[datetime], at: datetime, max: int, per: timedelta) -> bool:
    """May one more contact happen at ``at`` without exceeding the cap?"""
    return _count(contact_times, at, per) < max


def cap_frees_at(
    contact_times: Sequence[datetime], at: datetime, max: int, per: timedelta
) -> datetime | None:
    """The earliest instant ``>= at`` at which :func:`within_cap` holds, assuming no new
    contacts: ``at`` itself when under the cap now, else when enough of the oldest counted
    contacts have left the window. None when ``max <= 0`` (the cap never frees).
    """
    if max <= 0:
        return None
    counted = sorted(time for time in contact_times if time > at - per)
    excess = len(counted) - max
    if excess < 0:
        return at
    # The (excess + 1) oldest contacts must leave; the last of them leaves at its time + per.
    frees = counted[excess] + per
    return frees if frees > at else at


def _count(contact_times: Sequence[datetime], at: datetime, per: timedelta) -> int:
    since = at - per
    return sum(1 for time in contact_times if time > since)
