"""Durations as text, parsed and written back: '90d', '36h', '2w', '30m' (and '2s' in settings).

Plain functions with no pydantic: the settings read durations at every start-up (#18);
engine/definitions/durations.py gives campaign files the same parsing as a pydantic type.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

_PART = re.compile(r"(\d+)\s*([wdhm])")
_WHOLE = re.compile(r"^\s*(?:\d+\s*[wdhm]\s*)+$")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
# Settings also take seconds ('2s', '1m30s'): a retry delay or a lease in a test or a demo.
_FINE_PART = re.compile(r"(\d+)\s*([wdhms])")
_FINE_WHOLE = re.compile(r"^\s*(?:\d+\s*[wdhms]\s*)+$")


def parse_duration(value: Any, *, seconds: bool = False) -> timedelta:
    """'3d', '36h', '1w2d'; with ``seconds`` also '2s', '1m30s' (settings, not campaign files)."""
    if isinstance(value, timedelta):
        return value
    example = "'3d', '36h' or '2s'" if seconds else "'3d' or '36h'"
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{value!r} is not a duration; use e.g. {example}")
    text = str(value).strip().lower()
    if text == "0":
        return timedelta(0)
    whole, part = (_FINE_WHOLE, _FINE_PART) if seconds else (_WHOLE, _PART)
    if not whole.match(text):
        raise ValueError(f"{value!r} is not a duration; use e.g. {example}")
    total = timedelta(0)
    for amount, unit in part.findall(text):
        total += timedelta(**{_UNITS[unit]: int(amount)})
    return total


def parse_fine_duration(value: Any) -> timedelta:
    return parse_duration(value, seconds=True)


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0d"
    for suffix, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{suffix}"
    return f"{seconds}s"  # settings only: campaign files have whole minutes
