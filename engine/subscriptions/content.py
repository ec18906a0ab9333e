"""What a delivery says: each report of the subscription for its period, as an HTML body
(headings, numbers and dates in the subscription's language) and one CSV attachment per
report (headings translated, figures left machine-readable for a spreadsheet).

The body carries tables only: mail clients drop inline SVG, so the charts stay in
`campaign report ... --html`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from engine.channels.base import Attachment
from engine.csv_safe import SafeWriter
from engine.errors import NotFoundError
from engine.reports.common import Period, Table
from engine.reports.render import cell as csv_cell
from engine.settings import Settings
from engine.subscriptions.l10n import Localizer
from engine.subscriptions.schema import ReportSection, Subscription

SECTION_TITLES = {
    "campaign": "Campaign results",
    "retention": "Retention",
    "agents": "Agents",
    "complaints": "Complaints",
    "deliverability": "Deliverability",
}

_CSS = (
    "body{font-family:Arial,Helvetica,sans-serif;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:13px}"
    "th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}"
    "th{background:#eef1f5}td:first-child,th:first-child{text-align:left}"
    ".meta{color:#555}"
)


@dataclass(frozen=True)
class Section:
    report: str
    title: str
    tables: list[Table]
    note: str | None = None


@dataclass(frozen=True)
class Content:
    subject: str
    html: str
    text: str
    attachments: tuple[Attachment, ...]


def build_sections(
    session: Session,
    subscription: Subscription,
    *,
    period: Period,
    at: datetime,
    settings: Settings,
) -> list[Section]:
    """Each report of the subscription for ``period``. An unknown campaign or program is an
    error (the delivery fails, and says why); a campaign with no run in the period is a note."""
    return [_section(session, subscription, s, period=period, at=at, settings=settings)
            for s in subscription.reports]  # fmt: skip


def _section(
    session: Session,
    subscription: Subscription,
    section: ReportSection,
    *,
    period: Period,
    at: datetime,
    settings: Settings,
) -> Section:
    from engine.cases.report import with_root_causes
    from engine.reports.agents import agents_report
    from engine.reports.campaign import campaign_report, resolve_runs
    from engine.reports.complaints import complaints_report
    from engine.reports.deliverability import deliverability_report
    from engine.reports.retention import retention_report

    program = section.program or subscription.program
    title = SECTION_TITLES[section.report]
    report: Any
    if section.report == "campaign":
        assert section.campaign is not None
        resolve_runs(session, section.campaign, period=None, program=program)  # exists at all
        try:
            report = campaign_report(session, section.campaign, period=period, program=program)
        except NotFoundError:
            return Section(
                "campaign",
                f"{title}: {section.campaign}",
                [],
                note="no run of this campaign was launched in the period",
            )
        title = f"{title}: {section.campaign}"
    elif section.report == "retention":
        report = retention_report(
            session,
            at=at,
            event=section.event,
            period=period,
            program=program,
            campaign=section.campaign,
        )
    elif section.report == "agents":
        report = agents_report(
            session,
            at=at,
            settings=settings,
            period=period,
            program=program,
            campaign=section.campaign,
            agent=section.agent,
        )
    elif section.report == "complaints":
        report = complaints_report(
            session,
            at=at,
            settings=settings,
            period=period,
            program=program,
            campaign=section.campaign,
            by=section.by,
        )
        # The same sections as `campaign report complaints`: the cases' root causes follow.
        report = with_root_causes(session, report, at=at, period=period, program=program)
    else:
        report = deliverability_report(
            session, at=at, period=period, program=program, campaign=section.campaign
        )
    return Section(section.report, title, list(report.tables()))


def render_content(
    subscription: Subscription,
    sections: list[Section],
    *,
    period: Period,
    timezone: str,
    generated_at: datetime,
) -> Content:
    """The email of a delivery: subject, HTML body, plain-text part and CSV attachments."""
    t = Localizer(subscription.language)
    zone = ZoneInfo(timezone)
    first = period.start.astimezone(zone).date()
    last = (period.end - timedelta(microseconds=1)).astimezone(zone).date()
    dates = f"{t.day(first)} – {t.day(last)}"
    subject = subscription.subject or f"{t.text('Report')}: {subscription.name} ({dates})"
    meta = [
        (t.text("Period"), f"{dates} ({timezone})"),
        (t.text("Generated"), t.moment(generated_at, timezone)),
    ]
    if subscription.program:
        meta.insert(1, (t.text("Program"), subscription.program))
    wants_csv = "csv" in subscription.format
    attachments = tuple(_csv(section, t, index) for index, section in enumerate(sections)
                        if wants_csv and section.tables)  # fmt: skip
    if attachments:
        meta.append((t.text("Attachments"), ", ".join(a.filename for a in attachments)))
    html = _html(subject, meta, sections, t, tables="html" in subscription.format)
    text_lines = [subject, "", *(f"{k}: {v}" for k, v in meta), ""]
    for section in sections:
        text_lines.append(_section_title(section, t))
        if section.note:
            text_lines.append(f"  {t.text(section.note)}")
        elif _nothing_to_report(section):
            text_lines.append(f"  {t.text(NOTHING_TO_REPORT)}")
    return Content(subject, html, "\n".join(text_lines) + "\n", attachments)


NOTHING_TO_REPORT = "nothing to report for this period"


def _nothing_to_report(section: Section) -> bool:
    """A section whose tables are all empty (and that says nothing else): one line says so."""
    return section.note is None and not any(table.rows for table in section.tables)


def _section_title(section: Section, t: Localizer) -> str:
    head, _, rest = section.title.partition(": ")
    return t.text(head) + (f": {rest}" if rest else "")


def _html(
    subject: str,
    meta: list[tuple[str, str]],
    sections: list[Section],
    t: Localizer,
    *,
    tables: bool,
) -> str:
    lang = "zh-Hans" if t.language == "zh" else t.language
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{lang}"><head><meta charset="utf-8">',
        f"<title>{escape(subject)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(subject)}</h1>",
        '<p class="meta">' + "<br>".join(f"{escape(k)}: {escape(v)}" for k, v in meta) + "</p>",
    ]
    for section in sections:
        parts.append(
            f'<h2 data-report="{section.report}">{escape(_section_title(section, t))}</h2>'
        )
        if section.note:
            parts.append(f"<p>{escape(t.text(section.note))}</p>")
        if not tables:
            continue
        if _nothing_to_report(section):
            parts.append(f"<p>{escape(t.text(NOTHING_TO_REPORT))}</p>")
        # As in `campaign report`: a table without rows is left out, not shown as "(none)"
        # (the CSV attachment keeps every table, headers included, for a spreadsheet).
        for table in (table for table in section.tables if table.rows):
            parts.append(f"<h3>{escape(t.text(table.title))}</h3>")
            if table.note:
                parts.append(f"<p>{escape(table.note)}</p>")
            parts.append("<table><thead><tr>")
            parts.extend(f"<th>{escape(t.text(str(c)))}</th>" for c in table.columns)
            parts.append("</tr></thead><tbody>")
            for row in table.rows:
                cells = [
                    t.text(v) if i == 0 and isinstance(v, str) else t.cell(v)
                    for i, v in enumerate(row)
                ]
                parts.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
            parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _csv(section: Section, t: Localizer, index: int) -> Attachment:
    out = io.StringIO()
    writer = SafeWriter(out, lineterminator="\r\n")
    for table in section.tables:
        writer.writerow([t.text(table.title)])
        writer.writerow([t.text(str(c)) for c in table.columns])
        for row in table.rows:
            writer.writerow([csv_cell(v) for v in row])
        writer.writerow([])
    name = section.report if section.report != "campaign" else section.title.split(": ", 1)[-1]
    # A BOM so spreadsheet programs read the UTF-8 (Chinese headings) as UTF-8.
    data = "\ufeff" + out.getvalue()
    return Attachment(f"{index + 1:02d}-{name}.csv", data.encode("utf-8"), "text/csv", "utf-8")


__all__ = ["Content", "Section", "build_sections", "render_content"]
