"""The record of skipped cron fires (`campaign runs skipped`, the count in `runs list`).

Only SQL over `skipped_fires`: the commands that read it start without loading campaign
definitions or the cron library (engine.schedules writes the record).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.db.models import SkippedFire


def count_skipped(session: Session, *, campaign: str | None = None) -> int:
    query = select(func.count()).select_from(SkippedFire)
    if campaign is not None:
        query = query.where(SkippedFire.campaign == campaign)
    return int(session.scalar(query) or 0)


@dataclass(frozen=True)
class SkippedFireRow:
    campaign: str
    fire_at: datetime
    fire_key: str
    skipped_at: datetime
    reason: str


def list_skipped(
    session: Session, *, campaign: str | None = None, limit: int = 100
) -> list[SkippedFireRow]:
    """Skipped fire times, newest fire first."""
    query = select(SkippedFire).order_by(SkippedFire.fire_at.desc(), SkippedFire.id.desc())
    if campaign is not None:
        query = query.where(SkippedFire.campaign == campaign)
    return [
        SkippedFireRow(r.campaign, r.fire_at, r.fire_key, r.skipped_at, r.reason)
        for r in session.scalars(query.limit(limit))
    ]
