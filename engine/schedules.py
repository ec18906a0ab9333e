"""Which cron fires the scheduler launches, which it skips, and re-entry measured in fires.

A recurring campaign's fire is launched by the tick (and the daemon, which calls the same
:func:`engine.planning.launch_due`) only when both hold:

- it is at most the misfire grace late (``CAMPAIGN_SCHEDULER_MISFIRE_GRACE_SECONDS``): a tick
  after an outage, or a yearly campaign added in June, does not send January's mail;
- its schedule was already known when it fired: ``campaign_schedules`` keeps when the engine
  first saw each (campaign, schedule hash), so a new or edited schedule starts from its next
  fire time.

Any other fire is recorded once in ``skipped_fires`` (the tick says so, and
``campaign runs skipped`` lists them). One-off campaigns (``start``) keep their meaning, "from
``start`` on": they launch at the first tick at or after it, however late.

Re-entry (``reentry: {after: D}``) compares fire times, never launch instants: a run's time is
its fire (its launch instant for one-off runs). A whole number of days counts calendar days in
the schedule's zone (the program's for one-offs), so a 14-day rule re-admits a member at the
fire 14 local days later, across DST changes too; shorter rules compare fire instants.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine.db.models import CampaignRun, CampaignSchedule, SkippedFire
from engine.definitions.durations import format_duration
from engine.definitions.loader import parse_stored_definition
from engine.definitions.schema import CampaignDefinition, Schedule
from engine.errors import DefinitionError, DefinitionErrors
from engine.fire_times import wall_to_instant

# The record of skipped fires is read by `runs list` / `runs skipped`, which must not pay for
# the definitions this module loads; kept importable from here.
from engine.skipped_fires import SkippedFireRow, count_skipped, list_skipped

DAY = timedelta(days=1)


# --------------------------------------------------------------------------- pure rules


def schedule_description(schedule: Schedule) -> str:
    if schedule.cron is not None:
        return f"cron {schedule.cron} {schedule.timezone}"
    assert schedule.start is not None
    return f"once at {schedule.start.astimezone(UTC).isoformat()}"


def schedule_hash(schedule: Schedule) -> str:
    return hashlib.sha256(schedule_description(schedule).encode()).hexdigest()


def skip_reason(
    fire: datetime, *, at: datetime, first_seen: datetime, grace: timedelta
) -> str | None:
    """Why the fire ``fire`` must not launch at ``at`` (None: launch it)."""
    late = at - fire
    if late > grace:
        return f"{_late(late)} late, grace {format_duration(grace)}"
    if fire < first_seen:
        return (
            f"its schedule was first seen at {first_seen.isoformat(timespec='seconds')}, "
            "after this fire; it starts from its next fire time"
        )
    return None


def _late(delta: timedelta) -> str:
    if delta >= 2 * DAY:
        return f"{delta // DAY} days"
    minutes = int(delta.total_seconds() // 60)
    hours, mins = divmod(minutes, 60)
    parts = [f"{hours} h" if hours else "", f"{mins} min" if mins or not hours else ""]
    return " ".join(p for p in parts if p)


def local_fire(fire: datetime, timezone: str | None) -> str:
    """A fire time as its schedule reads it: '2026-01-01 09:00 EST'."""
    local = fire.astimezone(ZoneInfo(timezone)) if timezone else fire.astimezone(UTC)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


@dataclass(frozen=True)
class ReentryBound:
    """A previous enrollment blocks re-entry when its run's time is after ``since`` (or at it,
    when ``inclusive``)."""

    since: datetime
    inclusive: bool


def reentry_bound(reference: datetime, after: timedelta, timezone: str) -> ReentryBound:
    """The re-entry bound for a launch whose time (its fire) is ``reference``.

    Whole days: blocked while the previous run's local date is later than this one's minus
    the days, i.e. from the start of local day (date - days + 1) on."""
    if after % DAY == timedelta(0):
        zone = ZoneInfo(timezone)
        today = reference.astimezone(zone).date()
        first_blocked = today - after + DAY
        midnight = datetime(first_blocked.year, first_blocked.month, first_blocked.day)
        return ReentryBound(wall_to_instant(midnight, zone), inclusive=True)
    return ReentryBound(reference - after, inclusive=False)


# --------------------------------------------------------------------------- storage


def _insert(session: Session) -> object:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def first_seen(session: Session, definition: CampaignDefinition, *, at: datetime) -> datetime:
    """When the engine first saw this campaign's current schedule (recorded now if never).

    A schedule met for the first time that runs of the campaign already used (a database
    from before this table) counts as seen at its earliest such run's launch."""
    schedule = definition.schedule
    assert schedule is not None
    digest = schedule_hash(schedule)
    where = (CampaignSchedule.campaign == definition.name, CampaignSchedule.schedule_hash == digest)
    seen = session.scalar(select(CampaignSchedule.first_seen_at).where(*where))
    if seen is not None:
        return seen
    since = min(at, _earliest_run_with(session, definition.name, digest) or at)
    insert = _insert(session)
    session.execute(
        insert(CampaignSchedule)  # type: ignore[operator]
        .values(
            campaign=definition.name,
            schedule_hash=digest,
            description=schedule_description(schedule),
            first_seen_at=since,
        )
        .on_conflict_do_nothing(index_elements=["campaign", "schedule_hash"])
    )
    seen = session.scalar(select(CampaignSchedule.first_seen_at).where(*where))
    assert seen is not None
    return seen


def _earliest_run_with(session: Session, campaign: str, digest: str) -> datetime | None:
    rows = session.execute(
        select(CampaignRun.launched_at, CampaignRun.definition_hash, CampaignRun.definition_source)
        .where(CampaignRun.campaign == campaign)
        .order_by(CampaignRun.launched_at)
    ).all()
    matches: dict[str, bool] = {}
    for launched_at, definition_digest, source in rows:
        if definition_digest not in matches:
            try:
                stored = parse_stored_definition(source, f"a run of {campaign}").definition
            except (DefinitionError, DefinitionErrors):
                matches[definition_digest] = False
                continue
            schedule = stored.schedule
            matches[definition_digest] = schedule is not None and schedule_hash(schedule) == digest
        if matches[definition_digest]:
            return launched_at
    return None


def record_skip(
    session: Session, campaign: str, *, fire: datetime, key: str, at: datetime, reason: str
) -> bool:
    """Record a skipped fire; False when it was recorded before (reported already)."""
    insert = _insert(session)
    created = session.execute(
        insert(SkippedFire)  # type: ignore[operator]
        .values(campaign=campaign, fire_key=key, fire_at=fire, skipped_at=at, reason=reason)
        .on_conflict_do_nothing(index_elements=["campaign", "fire_key"])
        .returning(SkippedFire.id)
    ).scalar_one_or_none()
    return created is not None


__all__ = [
    "ReentryBound",
    "SkippedFireRow",
    "count_skipped",
    "first_seen",
    "list_skipped",
    "local_fire",
    "record_skip",
    "reentry_bound",
    "schedule_description",
    "schedule_hash",
    "skip_reason",
]
