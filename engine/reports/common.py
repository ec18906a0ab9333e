"""What every report shares: the period filter, tables for the renderers, SQL helpers."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db.models import CallerLogEntry, CampaignRun, Program
from engine.errors import NotFoundError

# The period filter lives in its own pure module (the CLI reads its help at start-up); the
# reports and their tests import it from here.
from engine.reports.period import PERIOD_HELP as PERIOD_HELP
from engine.reports.period import Period as Period
from engine.reports.period import parse_period as parse_period

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
