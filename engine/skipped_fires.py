"""The record of skipped cron fires (`campaign runs skipped`, the count in `runs list`).

Only SQL over `skipped_fires`: the commands that read it start without loading campaign
definitions or the cron library (engine.schedules writes the record).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from engine.db.reading import Reader
from engine.db.tables.runs import skipped_fires


def count_skipped(db: Reader, *, campaign: str | None = None) -> int:
    query = select(func.count()).select_from(skipped_fires)
    if campaign is not None:
        query = query.where(skipped_fires.c.campaign == campaign)
    return int(db.scalar(query) or 0)


@dataclass(frozen=True)
class SkippedFireRow:
    campaign: str
    fire_at: datetime
    fire_key: str
    skipped_at: datetime
    reason: str


def list_skipped(
    db: Reader, *, campaign: str | None = None, limit: int = 100
) -> list[SkippedFireRow]:
    """Skipped fire times, newest fire first."""
    fire = skipped_fires.c
    query = select(fire.campaign, fire.fire_at, fire.fire_key, fire.skipped_at, fire.reason)
    query = query.order_by(fire.fire_at.desc(), fire.id.desc())
    if campaign is not None:
        query = query.where(fire.campaign == campaign)
    return [SkippedFireRow(*row) for row in db.execute(query.limit(limit))]
