"""`campaign report ...`: the manager's reports. Each is declared once in
engine/reports/catalog.py (its filters, build, title; the console's /reports reads the same
entries); :func:`report_command` makes the command, with the options all of them take
(--period, --program, --json, --csv, --html), and renders it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from engine.cli.common import (
    JSON_HELP,
    CliState,
    emit_json,
    pass_state,
    reading_session,
    render_table,
)
from engine.reports.catalog import COMMON_FILTERS, REPORTS, ReportSpec


def _report_output(
    report: Any, title: str, *, as_json: bool, as_csv: bool, html: Path | None, meta: str
) -> None:
    """Render a report (an object with tables() and charts()): JSON, CSV, or the terminal
    tables; --html FILE also writes the self-contained HTML report."""
    from engine.reports.render import to_csv, to_html

    if html is not None:
        verdicts = report.verdicts() if hasattr(report, "verdicts") else []
        page = to_html(title, report.tables(), report.charts(), meta=meta, verdicts=verdicts)
        try:
            html.write_text(page, "utf-8")
        except OSError as exc:
            raise click.ClickException(f"cannot write {html}: {exc.strerror}") from exc
    if as_json:
        emit_json(report)
    elif as_csv:
        click.echo(to_csv(report.tables()), nl=False)
    else:
        # A table without rows is left out (--json keeps the empty list, --csv the header).
        tables = [table for table in report.tables() if table.rows]
        for table in tables:
            render_table(table.title, list(table.columns), table.rows)
            if table.note:
                click.echo(table.note)
        if not tables:
            click.echo(f"{title}: nothing to report for these filters.")
    if html is not None and not as_json and not as_csv:
        click.echo(f"HTML report: {html}")


@click.group("report")
def report_group() -> None:
    """Manager's reports: campaign results with lift over holdout, retention, deliverability,
    agents and complaints. Each prints tables, --json, --csv, or writes --html FILE."""


def _params(spec: ReportSpec) -> list[click.Parameter]:
    """The command's own arguments and options (the report's filters), then the common ones."""
    params: list[click.Parameter] = []
    for flt in (*spec.filters, *COMMON_FILTERS):
        if flt.argument is not None:
            params.append(click.Argument([flt.name], metavar=flt.argument))
        else:
            params.append(
                click.Option(
                    [f"--{flt.name}"],
                    type=click.Choice(flt.choices) if flt.choices else None,
                    default=flt.default,
                    show_default=flt.default is not None,
                    help=flt.help,
                )
            )
    return [
        *params,
        click.Option(["--json", "as_json"], is_flag=True, help=JSON_HELP),
        click.Option(["--csv", "as_csv"], is_flag=True, help="Print the tables as CSV."),
        click.Option(
            ["--html"],
            type=click.Path(dir_okay=False, path_type=Path),
            help="Also write one self-contained HTML file with charts (opens offline).",
        ),
    ]


def report_command(spec: ReportSpec) -> click.Command:
    """Declare `campaign report NAME` from its entry in engine/reports/catalog.py: the options
    every report takes (--period, --program, --json, --csv, --html), the "Generated ..." line
    and the rendering are wired here, once."""

    def run(
        state: CliState,
        period: str | None,
        program: str | None,
        as_json: bool,
        as_csv: bool,
        html: Path | None,
        **own: Any,
    ) -> None:
        from engine.reports.catalog import build

        at = state.app().clock.now()
        with reading_session(state) as session:
            built = build(
                spec, session, state.settings, at=at, period=period, program=program, own=own
            )
        _report_output(
            built.report, built.title, as_json=as_json, as_csv=as_csv, html=html, meta=built.meta
        )

    return report_group.command(spec.name, help=spec.help, params=_params(spec))(pass_state(run))


for _spec in REPORTS:
    report_command(_spec)
