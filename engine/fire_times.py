"""Fire times of a recurring schedule: one per local calendar fire, DST-safe (pure).

A crontab names wall-clock times in the schedule's zone. Each matching wall time is one fire,
turned into one instant, so that DST never doubles or drops a fire (Vixie cron's rules, which
APScheduler 4's CronTrigger follows too):

- a wall time that happens twice (the US fall-back hour: ``30 1 * * *`` in New York) fires
  once, at its first occurrence (``fold=0``); the repeated hour fires nothing;
- a wall time that does not exist (the spring-forward gap: ``30 2 * * *``) fires at the moment
  the clocks jump, the first instant after the gap.

The wall times come from APScheduler's CronTrigger evaluated in UTC, a zone without DST,
where every wall time exists exactly once; :func:`wall_to_instant` then places each in the
real zone. The instant of a later wall time is never earlier (gap times collapse onto the
jump), so the fires are in order and searches can stop at the first one past a bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

# Wider than any UTC offset change (2 h at most, Antarctica/Troll), so a search window in wall
# time around an instant always holds the fires near that instant.
_SLACK = timedelta(hours=3)
_LOOKBACKS = (
    timedelta(hours=2),
    timedelta(days=2),
    timedelta(days=9),
    timedelta(days=33),
    timedelta(days=367),
    timedelta(days=5 * 366),
)


def wall_to_instant(wall: datetime, zone: tzinfo) -> datetime:
    """The UTC instant at which the naive local ``wall`` time fires in ``zone``."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first  # exists (the first of two when repeated)
    # In a gap: fold=0 reads it with the offset before the jump (an instant after the jump),
    # fold=1 with the offset after it (an instant before): the jump lies between the two.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = first
    target = first.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


class LocalCron:
    """A 5-field crontab in an IANA zone, with DST handled as the module docstring says."""

    def __init__(self, cron: str, timezone: str) -> None:
        self.cron = cron
        self.zone = ZoneInfo(timezone)
        self._walls = CronTrigger.from_crontab(cron, timezone=UTC)

    def _walls_from(self, start: datetime) -> Iterator[datetime]:
        """Matching naive wall times at or after the naive wall time ``start``."""
        current = self._walls.get_next_fire_time(None, start.replace(tzinfo=UTC))
        while current is not None:
            yield current.replace(tzinfo=None)
            current = self._walls.get_next_fire_time(current, current + timedelta(seconds=1))

    def _wall(self, at: datetime) -> datetime:
        return at.astimezone(self.zone).replace(tzinfo=None)

    def fires_from(self, start: datetime) -> Iterator[datetime]:
        """Distinct fire instants (UTC) at or after ``start``, in order."""
        previous: datetime | None = None
        for wall in self._walls_from(self._wall(start) - _SLACK):
            instant = wall_to_instant(wall, self.zone)
            if instant < start or instant == previous:
                continue
            previous = instant
            yield instant

    def next_fire(self, after: datetime) -> datetime | None:
        """The first fire strictly after ``after``."""
        for instant in self.fires_from(after):
            if instant > after:
                return instant
        return None

    def latest_fire(self, at: datetime) -> datetime | None:
        """The latest fire at or before ``at`` (None if none in the last five years)."""
        for lookback in _LOOKBACKS:
            latest: datetime | None = None
            for wall in self._walls_from(self._wall(at - lookback)):
                instant = wall_to_instant(wall, self.zone)
                if instant > at:
                    break
                latest = instant
            if latest is not None:
                return latest
        return None


class LocalCronTrigger(CronTrigger):
    """APScheduler's CronTrigger with :class:`LocalCron`'s fire times, for the daemon's jobs:
    one fire per local calendar fire on DST days, like the tick's launches."""

    def __init__(self, cron: str, timezone: str) -> None:
        values = cron.split()
        if len(values) != 5:
            raise ValueError(f"Wrong number of fields; got {len(values)}, expected 5")
        super().__init__(
            minute=values[0],
            hour=values[1],
            day=values[2],
            month=values[3],
            day_of_week=values[4],
            timezone=timezone,
        )
        self.local = LocalCron(cron, timezone)

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if previous_fire_time is not None:
            # As CronTrigger does: the fire after the previous one, even if it is already
            # past, so the scheduler can coalesce missed fires or call them misfired.
            start = previous_fire_time + timedelta(microseconds=1)
        else:
            start = now
        instant = next(self.local.fires_from(start.astimezone(UTC)), None)
        return None if instant is None else instant.astimezone(self.local.zone)


__all__ = ["LocalCron", "LocalCronTrigger", "wall_to_instant"]
