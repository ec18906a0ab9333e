"""`campaign report complaints`: complaints by category over time, and each complaint itself.

Two sources, so that a root cause can be found from one report:

- calls logged with a complaint disposition (the caller log; each read with its own program's
  dispositions): category and summary are the fields of the call's documentation template,
  with the member and the agent who took it;
- ``complaint`` activity events that arrived through `campaign events import` or the events
  webhook (a CRM's or a contact centre's own feed). They carry no category (the event format
  has none), so they are counted under IMPORTED; the listing names the member and the
  event's reference in the source system. They belong to no campaign: with ``--campaign``
  they are left out (the table says so).

Counts per day / week / month in the default zone (``CAMPAIGN_DEFAULT_TIMEZONE``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.calls.reporting import (
    ComplaintCount,
    bucket_start,
    complaint_category,
    complaint_entries,
)
from engine.db.models import ActivityEvent, Participant
from engine.errors import InputError
from engine.reports.agents import call_window, check_filters, program_dispositions
from engine.reports.common import Chart, Period, Table, filters_label, program_id
from engine.settings import Settings

IMPORTED = "imported (no category)"
COMPLAINT_EVENT = "complaint"


@dataclass(frozen=True)
class Complaint:
    category: str
    at: datetime
    source: str  # "call", or the event's source ("import", "webhook")
    member: str | None  # external id; None once erased
    agent: str | None  # who took the call; None for an imported event
    campaign: str | None
    summary: str  # the call's summary (else its notes); an event: its reference


@dataclass(frozen=True)
class ComplaintsReport:
    period: str
    by: str
    counts: list[ComplaintCount]
    complaints: list[Complaint]
    program: str | None = None
    campaign: str | None = None
    # False with --campaign: complaint events belong to no campaign and are not counted.
    events_counted: bool = True

    def tables(self) -> list[Table]:
        categories = sorted({c.category for c in self.counts})
        periods = sorted({c.period for c in self.counts})
        grid: dict[tuple[object, str], int] = {(c.period, c.category): c.count for c in self.counts}
        rows = [
            (p.isoformat(), *(grid.get((p, cat), 0) for cat in categories),
             sum(grid.get((p, cat), 0) for cat in categories))
            for p in periods
        ]  # fmt: skip
        totals = [sum(grid.get((p, cat), 0) for p in periods) for cat in categories]
        if rows:
            rows.append(("total", *totals, sum(totals)))
        scope = filters_label(program=self.program, campaign=self.campaign)
        tables = [
            Table(
                f"Complaints by category and {self.by}, {self.period}{scope}",
                [self.by, *categories, "all"],
                rows,
                note=None
                if self.events_counted
                else "Imported complaint events belong to no campaign: not counted here.",
            )
        ]
        by_category: dict[str, list[Complaint]] = defaultdict(list)
        for complaint in self.complaints:
            by_category[complaint.category].append(complaint)
        for category in sorted(by_category):
            listed = by_category[category]
            tables.append(
                Table(
                    f"Complaints: {category} ({len(listed):,}){scope}",
                    ["when", "member", "agent", "campaign", "source", "summary"],
                    [_row(c) for c in listed],
                )
            )
        return tables

    def charts(self) -> list[Chart]:
        data: dict[str, dict[str, float]] = defaultdict(dict)
        for c in self.counts:
            data[c.period.isoformat()][c.category] = c.count
        return [Chart("bars", f"Complaints by category per {self.by}", dict(data))]


def _row(c: Complaint) -> tuple[str, ...]:
    when = c.at.isoformat(timespec="minutes")
    return (when, c.member or "(erased)", c.agent or "", c.campaign or "", c.source, c.summary)


def complaints_report(
    session: Session,
    *,
    at: datetime,
    settings: Settings,
    period: Period | None = None,
    program: str | None = None,
    campaign: str | None = None,
    by: str = "week",
) -> ComplaintsReport:
    if by not in ("day", "week", "month"):
        raise InputError(f"--by {by!r}: use day, week or month")
    check_filters(session, program, campaign)
    start, end, label = call_window(period, at)
    complaints = [
        Complaint(
            category=complaint_category(e),
            at=e.logged_at,
            source="call",
            member=e.external_id,
            agent=e.agent,
            campaign=e.campaign,
            summary=str((e.fields or {}).get("summary") or e.notes or ""),
        )
        for e in complaint_entries(
            session,
            start=start,
            end=end,
            dispositions=program_dispositions(session, settings, program),
            program=program,
            campaign=campaign,
        )
    ]
    if campaign is None:
        complaints.extend(_imported(session, start, end, program_id(session, program)))
        complaints.sort(key=lambda c: c.at)
    zone = ZoneInfo(settings.default_timezone)
    counts: Counter[tuple[date, str]] = Counter(
        (bucket_start(c.at.astimezone(zone).date(), by), c.category) for c in complaints
    )
    return ComplaintsReport(
        label,
        by,
        [ComplaintCount(d, category, n) for (d, category), n in sorted(counts.items())],
        complaints,
        program,
        campaign,
        events_counted=campaign is None,
    )


def _imported(
    session: Session, start: datetime, end: datetime, program: int | None
) -> list[Complaint]:
    """The complaint events from feeds in [start, end) (a call's own events are not feeds)."""
    e = ActivityEvent
    query = (
        select(e.occurred_at, e.source, e.reference, Participant.external_id)
        .join(Participant, Participant.id == e.participant_id)
        .where(
            e.type == COMPLAINT_EVENT,
            e.source != "call",
            e.occurred_at >= start,
            e.occurred_at < end,
        )
        .order_by(e.occurred_at, e.id)
    )
    if program is not None:
        query = query.where(e.program_id == program)
    return [
        Complaint(IMPORTED, when, source, member, None, None, f"event {reference}")
        for when, source, reference, member in session.execute(query)
    ]
