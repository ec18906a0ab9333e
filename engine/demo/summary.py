"""The demo's look at a program's member base: the figures a coordinator asks for first.

All SQL of the demo summary lives here. Counts run on the database (GROUP BY, EXISTS) so the
summary stays cheap at 1,000,000 members.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from engine.db.models import CHANNELS, ActivityEvent, Consent, Participant, Program
from engine.locales import display_name, written_in_cjk

INACTIVE_DAYS = 90
HORIZON_DAYS = 30


@dataclass(frozen=True)
class ConsentCounts:
    opted_in: int
    opted_out: int
    not_stated: int


@dataclass(frozen=True)
class SampleParticipant:
    why: str
    external_id: str
    name: str
    locale: str | None
    timezone: str | None
    status: str
    tier: str | None
    points_balance: int
    points_expiring: int
    points_expire_at: date | None
    renewal_date: date | None
    last_activity_at: datetime | None


@dataclass(frozen=True)
class ProgramSummary:
    program: str
    today: date  # in the program's time zone
    participants: int
    by_status: dict[str, int]
    by_locale: dict[str, int]
    by_tier: dict[str, int]
    consents: dict[str, ConsentCounts]  # channel -> counts
    points_expiring_30d: int  # members with points expiring in the next 30 days
    points_expiring_30d_total: int  # the points at stake
    renewals_due_30d: int
    inactive_90d: int  # activity on record, none in the last 90 days (closed accounts aside)
    never_activated: int  # no activation event at all
    samples: list[SampleParticipant]


def summarize_program(session: Session, program_key: str, *, at: datetime) -> ProgramSummary:
    program = session.execute(select(Program).where(Program.key == program_key)).scalar_one()
    today = at.astimezone(ZoneInfo(program.timezone)).date()
    horizon = today + timedelta(days=HORIZON_DAYS)
    mine = Participant.program_id == program.id

    def grouped(column: InstrumentedAttribute[Any]) -> dict[str, int]:
        rows = session.execute(
            select(column, func.count()).where(mine).group_by(column).order_by(func.count().desc())
        ).all()
        return {("(blank)" if key is None else str(key)): int(n) for key, n in rows}

    total = int(session.scalar(select(func.count()).where(mine)) or 0)

    consent_rows = session.execute(
        select(Consent.channel, Consent.status, func.count())
        .join(Participant, Participant.id == Consent.participant_id)
        .where(mine)
        .group_by(Consent.channel, Consent.status)
    ).all()
    stated = {(channel, status): int(n) for channel, status, n in consent_rows}
    consents = {}
    for channel in CHANNELS:
        opted_in = stated.get((channel, "opted_in"), 0)
        opted_out = stated.get((channel, "opted_out"), 0)
        consents[channel] = ConsentCounts(opted_in, opted_out, total - opted_in - opted_out)

    expiring = and_(
        mine,
        Participant.points_expiring > 0,
        Participant.points_expire_at >= today,
        Participant.points_expire_at <= horizon,
    )
    expiring_members, expiring_points = session.execute(
        select(func.count(), func.coalesce(func.sum(Participant.points_expiring), 0)).where(
            expiring
        )
    ).one()
    renewal_due = and_(
        mine,
        Participant.status != "closed",
        Participant.renewal_date >= today,
        Participant.renewal_date <= horizon,
    )
    inactive = and_(
        mine,
        Participant.status != "closed",
        Participant.last_activity_at < at - timedelta(days=INACTIVE_DAYS),
    )
    activated = exists().where(
        ActivityEvent.participant_id == Participant.id, ActivityEvent.type == "activation"
    )
    never_activated = and_(mine, ~activated)

    # One member per reason, each a different one. The Chinese-speaking sample prefers a name
    # written in Chinese characters, which shows that the import kept them.
    samples: list[SampleParticipant] = []
    for why, condition in (
        (f"points expire within {HORIZON_DAYS} days", expiring),
        (f"renewal due within {HORIZON_DAYS} days", renewal_due),
        (f"inactive {INACTIVE_DAYS}+ days", inactive),
        ("never activated", never_activated),
        ("platinum, has an account manager", and_(mine, Participant.tier == "platinum")),
        ("Chinese-speaking", and_(mine, Participant.locale == "zh")),
        ("Spanish-speaking", and_(mine, Participant.locale == "es")),
    ):
        picked = [sample.external_id for sample in samples]
        candidates = session.scalars(
            select(Participant)
            .where(condition, Participant.external_id.not_in(picked))
            .order_by(Participant.external_id)
            .limit(20 if why == "Chinese-speaking" else 1)
        ).all()
        written_in_chinese = [
            p for p in candidates if written_in_cjk((p.first_name or "") + (p.last_name or ""))
        ]
        if candidates:
            samples.append(_sample(why, (written_in_chinese or candidates)[0]))

    return ProgramSummary(
        program=program.key,
        today=today,
        participants=total,
        by_status=grouped(Participant.status),
        by_locale=grouped(Participant.locale),
        by_tier=grouped(Participant.tier),
        consents=consents,
        points_expiring_30d=int(expiring_members),
        points_expiring_30d_total=int(expiring_points),
        renewals_due_30d=int(session.scalar(select(func.count()).where(renewal_due)) or 0),
        inactive_90d=int(session.scalar(select(func.count()).where(inactive)) or 0),
        never_activated=int(session.scalar(select(func.count()).where(never_activated)) or 0),
        samples=samples,
    )


def _sample(why: str, p: Participant) -> SampleParticipant:
    name = display_name(p.first_name, p.last_name, p.locale)
    return SampleParticipant(
        why=why,
        external_id=p.external_id,
        name=name,
        locale=p.locale,
        timezone=p.timezone,
        status=p.status,
        tier=p.tier,
        points_balance=p.points_balance,
        points_expiring=p.points_expiring,
        points_expire_at=p.points_expire_at,
        renewal_date=p.renewal_date,
        last_activity_at=p.last_activity_at,
    )
