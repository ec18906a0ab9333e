"""Send and call windows in the recipient's local time, DST-safe.

A :class:`Window` is a local time-of-day range ``[start, end)`` on some weekdays. Whether an
instant is inside it is decided on the wall clock the recipient sees at that instant, in every
candidate zone (see :mod:`engine.policy.zones`): with several candidate zones the window must
hold in all of them, which is the strictest reading.

Every function here takes aware datetimes and returns aware UTC datetimes. Nothing reads a
clock. Daylight-saving changes are handled on the UTC timeline, so a wall time that does not
exist (spring forward) is never "reached" early and a repeated wall time (fall back, ``fold``)
opens the window only when the clock really reads it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAYS: frozenset[int] = frozenset(range(7))

# How far ahead next_allowed looks. A single-zone window with at least one weekday opens within
# a week; two weeks also covers a DST change that makes windows in several zones overlap again.
DEFAULT_HORIZON = timedelta(days=14)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
# Longest span assumed to hold at most one UTC-offset change. Checked against every zone of
# tzdata (tests/policy/test_policy_tzdata.py): no zone has changed its offset twice within a day.
_PROBE = timedelta(days=1)


class WindowSpec(Protocol):
    """Anything shaped like a campaign file's ``send_window`` / ``call_window``."""

    @property
    def start(self) -> time: ...

    @property
    def end(self) -> time: ...

    @property
    def days(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class Window:
    """Local times ``start`` (inclusive) to ``end`` (exclusive) on ``days`` (0 = Monday).

    A window with ``start >= end`` or no days is *empty*: it never opens. Windows do not wrap
    past midnight (campaign files require start < end).
    """

    start: time
    end: time
    days: frozenset[int] = field(default=ALL_DAYS)

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("window times are local wall times: pass naive times")
        if not self.days <= ALL_DAYS:
            raise ValueError(f"window days must be weekday numbers 0..6, got {sorted(self.days)}")

    @classmethod
    def of(
        cls, start: str | time, end: str | time, days: Iterable[str | int] | None = None
    ) -> Window:
        """Build from ``"HH:MM"`` strings and day names (``"mon"``..``"sun"``) or numbers."""
        return cls(_parse_time(start), _parse_time(end), _parse_days(days))

    @classmethod
    def from_spec(cls, spec: WindowSpec) -> Window:
        """Convert a campaign definition's ``TimeWindow`` (or anything shaped like it)."""
        return cls(spec.start, spec.end, _parse_days(spec.days))

    @property
    def is_empty(self) -> bool:
        return self.start >= self.end or not self.days

    def intersect(self, other: Window) -> Window:
        """The window allowed by both: later start, earlier end, common days (may be empty)."""
        return Window(
            max(self.start, other.start), min(self.end, other.end), self.days & other.days
        )

    def contains_wall(self, wall: datetime) -> bool:
        """Is the local wall-clock reading ``wall`` (naive) inside the window?"""
        return wall.weekday() in self.days and self.start <= wall.time() < self.end

    def next_wall(self, wall: datetime) -> datetime | None:
        """The earliest naive wall time ``>= wall`` inside the window; None if it is empty.

        Pure calendar arithmetic: it knows nothing of zones (the caller handles offsets).
        """
        if self.is_empty:
            return None
        day = wall.date()
        for ahead in range(8):
            current = day + timedelta(days=ahead)
            if current.weekday() not in self.days:
                continue
            opens = datetime.combine(current, self.start)
            if ahead > 0 or wall < opens:
                return opens
            if wall < datetime.combine(current, self.end):
                return wall
        raise AssertionError("a non-empty window opens within 8 days")  # pragma: no cover


LEGAL_WINDOW = Window(time(8, 0), time(21, 0))
"""Calls and SMS: 08:00-21:00 recipient local time, every day. It cannot be widened."""


def effective_window(channel: str, campaign_window: Window | WindowSpec | None) -> Window | None:
    """The window that applies to ``channel``: the legal window narrowed by the campaign's.

    SMS and calls always get :data:`LEGAL_WINDOW` intersected with the campaign window, so a
    campaign can narrow the legal hours but never widen them. Email has no legal window: it gets
    the campaign window, or None (any time) when the campaign has none.
    """
    campaign = as_window(campaign_window)
    if channel in ("sms", "call"):
        return LEGAL_WINDOW if campaign is None else LEGAL_WINDOW.intersect(campaign)
    if channel == "email":
        return campaign
    raise ValueError(f"unknown channel {channel!r}; expected email, sms or call")


def as_window(window: Window | WindowSpec | None) -> Window | None:
    if window is None or isinstance(window, Window):
        return window
    return Window.from_spec(window)


def is_allowed(
    at: datetime, zones: Sequence[str | ZoneInfo], window: Window | WindowSpec | None
) -> bool:
    """Does ``window`` hold at instant ``at`` in every one of ``zones``? (None: always.)"""
    at = to_utc(at)
    resolved = as_window(window)
    if resolved is None:
        return True
    return all(resolved.contains_wall(_wall(at, zone)) for zone in _zones(zones))


def next_allowed(
    at: datetime,
    zones: Sequence[str | ZoneInfo],
    window: Window | WindowSpec | None,
    *,
    horizon: timedelta = DEFAULT_HORIZON,
) -> datetime | None:
    """The earliest instant ``>= at`` at which ``window`` holds in every zone (``at`` itself
    when allowed now), in UTC.

    Returns None when there is no such instant within ``horizon`` of ``at``: an empty window
    (no weekdays, start >= end) or windows that do not overlap across the zones (say
    09:00-10:00 in both New York and Kolkata). Callers treat None as "never" for this recipient.
    """
    at = to_utc(at)
    resolved = as_window(window)
    if resolved is None:
        return at
    tzs = _zones(zones)
    if resolved.is_empty:
        return None
    limit = at + horizon
    candidate = at
    # Sweep: move to the next opening of each zone in turn until a full pass moves nothing.
    # Every instant skipped is outside the window in at least one zone, so the fixpoint is the
    # earliest common instant.
    while True:
        moved = False
        for zone in tzs:
            opens = _next_open_in_zone(zone, resolved, candidate, limit)
            if opens is None:
                return None
            if opens != candidate:
                candidate = opens
                moved = True
        if not moved:
            return candidate


def local_time_on_day(
    base_at: datetime, days_after: int, time_of_day: time, zone: str | ZoneInfo
) -> datetime:
    """The UTC instant of ``time_of_day`` on the local date ``days_after`` days after
    ``base_at``'s local date in ``zone`` (a step's "3 days later at 10:00 recipient time").

    A repeated wall time (fall back) gives its first occurrence. A wall time that does not
    exist (spring forward) gives the instant the clock jumps over it (02:30 on a New York
    spring-forward day -> 03:00 EDT), the earliest moment the clock reads that time or later.
    """
    tz = _zone(zone)
    if time_of_day.tzinfo is not None:
        raise ValueError("time_of_day is a local wall time: pass a naive time")
    day = to_utc(base_at).astimezone(tz).date() + timedelta(days=days_after)
    wall = datetime.combine(day, time_of_day)
    readings = [wall.replace(tzinfo=tz, fold=fold).astimezone(UTC) for fold in (0, 1)]
    real = [instant for instant in readings if _wall(instant, tz) == wall]
    if real:
        return min(real)
    # In a gap PEP 495 maps the two folds to either side of the transition: find it.
    low, high = min(readings), max(readings)
    change = _first_change(tz, low, high, _offset(tz, low))
    if change is None:  # pragma: no cover - a gap always has a transition inside it
        raise AssertionError(f"{wall} does not exist in {tz.key} but no transition was found")
    return change


# ---------------------------------------------------------------------------------------------


def _next_open_in_zone(
    zone: ZoneInfo, window: Window, at: datetime, limit: datetime
) -> datetime | None:
    """Earliest instant >= at, and <= limit, at which ``window`` holds on ``zone``'s clock.

    Walks the UTC timeline in stretches of constant UTC offset: within a stretch local time is
    UTC plus a constant, so the first allowed wall time converts back exactly. A stretch ends at
    the next offset change, where the wall clock jumps (forward over a gap or back into a
    repeated hour) and the search restarts from the new reading.
    """
    start = at
    while start <= limit:
        offset = _offset(zone, start)
        wall = window.next_wall((start + offset).replace(tzinfo=None))
        if wall is None:
            return None
        opens = wall.replace(tzinfo=UTC) - offset
        if opens == start:
            return start
        probe_end = min(opens, start + _PROBE)
        change = _first_change(zone, start, probe_end, offset)
        if change is not None:
            start = change
        elif opens == probe_end:
            return opens if opens <= limit else None
        else:
            start = probe_end
    return None


def _first_change(
    zone: ZoneInfo, low: datetime, high: datetime, offset: timedelta
) -> datetime | None:
    """The first instant in (low, high] where ``zone``'s UTC offset differs from ``offset`` (the
    offset at ``low``), or None. Assumes at most one change in the span (high - low <= 1 day).

    tzdata transitions fall on whole seconds, so bisect over integer epoch seconds.
    """
    if _offset(zone, high) == offset:
        return None
    lo = (low - _EPOCH) // _SECOND  # floor: still before any change after `low`
    hi = -((_EPOCH - high) // _SECOND)  # ceiling: the new offset already holds
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(zone, _EPOCH + mid * _SECOND) == offset:
            lo = mid
        else:
            hi = mid
    return _EPOCH + hi * _SECOND


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has an offset for an aware instant
    return offset


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def to_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: pass an aware datetime")
    return value.astimezone(UTC)


def _zone(zone: str | ZoneInfo) -> ZoneInfo:
    return zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)


def _zones(zones: Sequence[str | ZoneInfo]) -> list[ZoneInfo]:
    if isinstance(zones, str):  # a bare string is a sequence of characters: refuse it
        raise TypeError("zones is a sequence of zone names, not one name")
    if not zones:
        raise ValueError("no candidate zones: resolve them with engine.policy.candidate_zones")
    return [_zone(zone) for zone in dict.fromkeys(zones)]


def _parse_time(value: str | time) -> time:
    if isinstance(value, time):
        return value
    try:
        return time.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a time of day; use HH:MM") from exc


def _parse_days(days: Iterable[str | int] | None) -> frozenset[int]:
    if days is None:
        return ALL_DAYS
    numbers: set[int] = set()
    for day in days:
        if isinstance(day, int):
            numbers.add(day)
        elif day.lower() in WEEKDAYS:
            numbers.add(WEEKDAYS.index(day.lower()))
        else:
            raise ValueError(f"{day!r} is not a weekday; use one of {', '.join(WEEKDAYS)}")
    return frozenset(numbers)
