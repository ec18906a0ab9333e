"""What every report shares: the period filter, tables for the renderers, SQL helpers."""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db.models import CallerLogEntry, CampaignRun, Program
from engine.errors import InputError, NotFoundError

# The outbox funnel, as the campaign and deliverability reports show it:
# created = skipped + eligible; eligible = pending (queued, sending) + unknown + failed + sent;
# sent = delivered + bounced + awaiting (accepted, no delivery report yet).
FUNNEL_COLUMNS = (
    "created",
    "skipped",
    "eligible",
    "pending",
    "unknown",
    "failed",
    "sent",
    "delivered",
    "bounced",
    "awaiting",
    "opened",
    "clicked",
)


def count_outbox(
    acc: MutableMapping[str, int], status: str, messages: int, opened: int, clicked: int
) -> None:
    """Add ``messages`` outbox rows in ``status`` (``opened``/``clicked`` of them) to ``acc``."""
    acc[status] += messages
    acc["created"] += messages
    acc["opened"] += opened
    acc["clicked"] += clicked


def funnel(acc: Mapping[str, int]) -> dict[str, int]:
    """The FUNNEL_COLUMNS figures of counts made by :func:`count_outbox` (they add up)."""
    delivered, bounced, awaiting = acc["delivered"], acc["bounced"], acc["sent"]
    sent = delivered + bounced + awaiting
    pending = acc["queued"] + acc["sending"]
    eligible = acc["created"] - acc["skipped"]
    assert eligible == pending + acc["unknown"] + acc["failed"] + sent
    return {
        "created": acc["created"],
        "skipped": acc["skipped"],
        "eligible": eligible,
        "pending": pending,
        "unknown": acc["unknown"],
        "failed": acc["failed"],
        "sent": sent,
        "delivered": delivered,
        "bounced": bounced,
        "awaiting": awaiting,
        "opened": acc["opened"],
        "clicked": acc["clicked"],
    }


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC, and how the user wrote it."""

    start: datetime
    end: datetime
    label: str

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end


_DAYS = re.compile(r"^(\d{1,4})d$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_YEAR = re.compile(r"^(\d{4})$")

PERIOD_HELP = (
    "Only this period (UTC): 2026, 2026-03, 2026-03-15, 2026-01-01..2026-03-31 "
    "(dates inclusive) or 30d (the last 30 days)."
)


def parse_period(value: str | None, *, at: datetime) -> Period | None:
    """--period: a year, a month, a day, an inclusive date range A..B, or the last N days."""
    if value is None:
        return None
    text = value.strip()
    try:
        if match := _DAYS.match(text):
            days = int(match.group(1))
            if days < 1:
                raise ValueError("at least 1 day")
            return Period(at - timedelta(days=days), at, text)
        if ".." in text:
            first, last = (part.strip() for part in text.split("..", 1))
            start = _day(date.fromisoformat(first))
            end = _day(date.fromisoformat(last)) + timedelta(days=1)
            if end <= start:
                raise ValueError("the range ends before it starts")
            return Period(start, end, text)
        if match := _MONTH.match(text):
            year, month = int(match.group(1)), int(match.group(2))
            start = datetime(year, month, 1, tzinfo=UTC)
            end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
            return Period(start, end, text)
        if match := _YEAR.match(text):
            year = int(match.group(1))
            return Period(
                datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC), text
            )
        day = date.fromisoformat(text)
        return Period(_day(day), _day(day) + timedelta(days=1), text)
    except ValueError as exc:
        raise InputError(
            f"--period {value!r} is not a period ({exc}); use 2026, 2026-03, 2026-03-15, "
            "2026-01-01..2026-03-31 or 30d"
        ) from exc


def _day(value: date) -> datetime:
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def program_id(session: Session, key: str | None) -> int | None:
    """The id of program ``key`` (None for all programs); NotFoundError names the keys."""
    if key is None:
        return None
    found = session.scalar(select(Program.id).where(Program.key == key))
    if found is None:
        keys = ", ".join(session.scalars(select(Program.key).order_by(Program.key))) or "none"
        raise NotFoundError(f"no program {key!r}; known programs: {keys}")
    return int(found)


def check_campaign(session: Session, name: str | None, *, program: str | None = None) -> None:
    """NotFoundError naming ``name`` and the known campaigns, unless campaign ``name`` was
    launched (in ``program``, a key) or has calls in the caller log (which outlives its runs)."""
    if name is None:
        return
    runs = select(CampaignRun.campaign).distinct()
    logged = select(CallerLogEntry.id).where(CallerLogEntry.campaign == name).limit(1)
    if program is not None:
        runs = runs.join(Program, Program.id == CampaignRun.program_id).where(
            Program.key == program
        )
        logged = logged.where(CallerLogEntry.program == program)
    known = sorted(session.scalars(runs))
    if name in known or session.scalar(logged) is not None:
        return
    where = f" in program {program!r}" if program is not None else ""
    raise NotFoundError(
        f"no campaign {name!r}{where}; known campaigns{where}: {', '.join(known) or 'none'}"
    )


def filters_label(**filters: str | None) -> str:
    """ ", program loyalty, campaign renew" for the filters given (titles of filtered tables)."""
    return "".join(f", {name} {value}" for name, value in filters.items() if value is not None)


@dataclass(frozen=True)
class Table:
    """One table of a report, as the terminal, CSV and HTML renderers show it."""

    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    note: str | None = None


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    group: str = ""  # series name, e.g. "sent"


@dataclass(frozen=True)
class Chart:
    """A chart for the HTML report (drawn as inline SVG by render.py)."""

    kind: str  # "bars" | "lines" | "intervals"
    title: str
    # bars: label -> {series: value}; lines: series -> [(x, y)]; intervals: label -> (est, lo, hi)
    data: dict[str, Any] = field(default_factory=dict)
    x_label: str = ""
    y_label: str = ""
    unit: str = "count"  # "count" | "percent" (a rate) | "pp" (a difference of rates)
    # bars: reference lines, name -> value (e.g. {"escalation ceiling 20%": 0.2})
    markers: dict[str, float] = field(default_factory=dict)


def pct(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value * 100:.{digits}f}%"


def ratio(count: int, total: int) -> float | None:
    return count / total if total else None
