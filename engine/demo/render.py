"""The demo report for people: rich tables on a terminal, plain text when piped.

Both renderers draw the same sections, built once by ``sections()``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.demo.run import PROGRAM_KEY, PROGRAM_NAME, STORY_LENGTH, DemoReport, ImportFigures
from engine.demo.summary import HORIZON_DAYS, INACTIVE_DAYS


@dataclass(frozen=True)
class Section:
    title: str
    rows: list[tuple[str, str]]


def sections(report: DemoReport) -> list[Section]:
    out: list[Section] = []
    files = [("database", f"{report.database}  ({report.database_url})")]
    if report.participants_file is not None:
        planted = sum(report.planted_bad_rows.values())
        files.append(
            (
                "participants",
                f"{report.participants_file}  {_n(report.participants_requested)} rows, "
                f"{_n(planted)} of them deliberately bad",
            )
        )
    if report.events_file is not None:
        files.append(("events", f"{report.events_file}  {_n(report.events_written)} rows"))
    for figures in (report.participants_import, report.events_import):
        if figures is not None and figures.rejects_path is not None:
            files.append(("rejects", str(figures.rejects_path)))
    out.append(Section("Files", files))

    imports = []
    if report.participants_import is not None:
        imports.append(("participants", _import_line(report.participants_import)))
    if report.events_import is not None:
        imports.append(("events", _import_line(report.events_import)))
    if report.planted_bad_rows:
        kinds = ", ".join(
            f"{_n(n)} {kind.replace('_', ' ')}" for kind, n in report.planted_bad_rows.items()
        )
        imports.append(("planted defects", kinds))
    if imports:
        out.append(Section("Import", imports))

    summary = report.summary
    if summary is not None:
        total = summary.participants
        out.append(
            Section(
                f"Members ({_n(total)})",
                [
                    ("status", _shares(summary.by_status, total)),
                    ("locale", _shares(summary.by_locale, total)),
                    ("tier", _shares(summary.by_tier, total)),
                    *(
                        (
                            f"consent {channel}",
                            f"{_n(c.opted_in)} yes, {_n(c.opted_out)} no, "
                            f"{_n(c.not_stated)} not stated",
                        )
                        for channel, c in summary.consents.items()
                    ),
                ],
            )
        )
        out.append(
            Section(
                f"Worth a campaign (as of {summary.today.isoformat()}, program time)",
                [
                    (
                        f"points expiring in {HORIZON_DAYS} days",
                        f"{_n(summary.points_expiring_30d)} members, "
                        f"{_n(summary.points_expiring_30d_total)} points",
                    ),
                    (f"renewals due in {HORIZON_DAYS} days", _n(summary.renewals_due_30d)),
                    (f"no activity for {INACTIVE_DAYS}+ days", _n(summary.inactive_90d)),
                    ("never activated", _n(summary.never_activated)),
                ],
            )
        )
    if report.campaigns:
        out.append(
            Section("Campaigns launched (as `campaign launch` would)", _campaign_rows(report))
        )
    # Sections later demo steps add (DemoContext.sections).
    for title, rows in report.sections:
        out.append(Section(title, list(rows)))
    if report.notes:
        out.append(Section("Notes", [("", note) for note in report.notes]))
    return out


def _campaign_rows(report: DemoReport) -> list[tuple[str, str]]:
    rows = []
    for c in report.campaigns:
        excluded = ", ".join(f"{_n(e.count)} {e.reason.replace('_', ' ')}" for e in c.exclusions)
        outcome = (
            f"run {c.run_id}: {_n(c.treatment)} to contact, {_n(c.holdout)} holdout"
            if c.run_id is not None
            else f"not launched: {c.note}"
        )
        rows.append(
            (
                c.campaign,
                f"{'/'.join(c.channels)}; audience {_n(c.audience)}"
                f"{f' (excluded: {excluded})' if excluded else ''}; {outcome}",
            )
        )
    return rows


def render_plain(report: DemoReport) -> str:
    lines = [_headline(report), ""]
    for section in sections(report):
        lines.append(section.title)
        width = max((len(label) for label, _ in section.rows), default=0)
        for label, value in section.rows:
            lines.append(f"  {label.ljust(width)}  {value}".rstrip() if label else f"  {value}")
        lines.append("")
    if report.summary is not None and report.summary.samples:
        lines.append("Sample participants")
        rows = _sample_rows(report)
        widths = [max(_width(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            padded = zip(row, widths, strict=True)
            cells = [cell + " " * (width - _width(cell)) for cell, width in padded]
            lines.append(("  " + "  ".join(cells)).rstrip())
        lines.append("")
    lines.append("Try next")
    lines.extend(f"  {command}" for command in report.next_commands)
    lines.append("")
    lines.append(_timing(report))
    return "\n".join(lines)


def render_rich(report: DemoReport, console: Console) -> None:
    console.print(Text(_headline(report), style="bold"))
    for section in sections(report):
        table = Table(title=section.title, title_justify="left", show_header=False, box=None)
        table.add_column(style="cyan", no_wrap=True)
        table.add_column()
        for label, value in section.rows:
            table.add_row(Text(label), Text(value))  # Text: no markup in paths or names
        console.print()
        console.print(table)
    if report.summary is not None and report.summary.samples:
        samples = Table(title="Sample participants", title_justify="left", box=None, padding=(0, 1))
        # Narrower than the plain listing (no locale) so it fits an 80-column terminal.
        samples.add_column("why", min_width=18)
        for column in ("id", "name", "status", "tier", "points"):
            samples.add_column(column, no_wrap=column != "name", min_width=len(column))
        for external_id, name, _locale, status, tier, points, why in _sample_rows(report):
            cells = (why, external_id, name, status, tier, points)
            samples.add_row(*(Text(cell) for cell in cells))
        console.print()
        console.print(samples)
    console.print()
    console.print("[bold]Try next[/bold]")
    for command in report.next_commands:
        console.print(f"  {command}", soft_wrap=True, markup=False)
    console.print()
    console.print(_timing(report), style="dim")


def _headline(report: DemoReport) -> str:
    return (
        f"{PROGRAM_NAME} demo (program {PROGRAM_KEY!r}), "
        f"launched {report.now:%Y-%m-%d %H:%M} UTC ({STORY_LENGTH.days} days ago), "
        f"seed {report.seed}"
    )


def _sample_rows(report: DemoReport) -> list[tuple[str, ...]]:
    assert report.summary is not None
    return [
        (
            s.external_id,
            s.name,
            s.locale or "",
            s.status,
            s.tier or "",
            _n(s.points_balance),
            s.why,
        )
        for s in report.summary.samples
    ]


def _import_line(figures: ImportFigures) -> str:
    rate = figures.read / figures.seconds if figures.seconds > 0 else 0.0
    return (
        f"read {_n(figures.read)}, inserted {_n(figures.inserted)}, "
        f"updated {_n(figures.updated)}, unchanged {_n(figures.unchanged)}, "
        f"rejected {_n(figures.rejected)} in {figures.seconds:.1f} s ({_n(int(rate))} rows/s)"
    )


def _shares(counts: dict[str, int], total: int) -> str:
    return ", ".join(f"{key} {_n(n)} ({100 * n / total:.0f}%)" for key, n in counts.items())


def _timing(report: DemoReport) -> str:
    parts: Sequence[str] = [f"{t.name} {t.seconds:.1f} s" for t in report.steps]
    return f"Took {report.seconds:.1f} s: " + ", ".join(parts) + "."


def _width(text: str) -> int:
    # Chinese characters take two columns in a terminal.
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _n(value: int) -> str:
    return f"{value:,}"
