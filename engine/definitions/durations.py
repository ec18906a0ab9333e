"""Durations as coordinators write them in campaign files: '90d', '36h', '2w', '30m'."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_PART = re.compile(r"(\d+)\s*([wdhm])")
_WHOLE = re.compile(r"^\s*(?:\d+\s*[wdhm]\s*)+$")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}


def parse_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{value!r} is not a duration; use e.g. '3d' or '36h'")
    text = str(value).strip().lower()
    if text == "0":
        return timedelta(0)
    if not _WHOLE.match(text):
        raise ValueError(f"{value!r} is not a duration; use e.g. '3d' or '36h'")
    total = timedelta(0)
    for amount, unit in _PART.findall(text):
        total += timedelta(**{_UNITS[unit]: int(amount)})
    return total


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0d"
    for suffix, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{suffix}"
    return f"{seconds // 60}m"


Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
