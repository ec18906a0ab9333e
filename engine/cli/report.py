"""`campaign report ...`: the manager's reports. Every report is declared with
:func:`report_command`, which wires the options all of them take (--period, --program, --json,
--csv, --html), the "Generated ..." line and the rendering once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from engine.cli.common import (
    JSON_HELP,
    CliState,
    emit_json,
    pass_state,
    render_table,
    transaction,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from engine.reports.period import Period
    from engine.settings import Settings


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


def _runs_label(runs: Sequence[int]) -> str:
    """'1 run (id 7)' or '12 runs (ids 3 to 41)'."""
    if len(runs) == 1:
        return f"1 run (id {runs[0]})"
    return f"{len(runs):,} runs (ids {min(runs)} to {max(runs)})"


@click.group("report")
def report_group() -> None:
    """Manager's reports: campaign results with lift over holdout, retention, deliverability,
    agents and complaints. Each prints tables, --json, --csv, or writes --html FILE."""


@dataclasses.dataclass(frozen=True)
class ReportRequest:
    """What every report command is asked, parsed once: its build function gets this and the
    command's own options."""

    session: Session
    at: datetime
    period: Period | None
    program: str | None
    settings: Settings


def report_command(
    name: str,
    *,
    title: str | Callable[[Any], str],
    shown: Sequence[str] = (),
    more_meta: Callable[[Any], str] | None = None,
) -> Callable[[Callable[..., Any]], click.Command]:
    """Declare `campaign report NAME` from a function that builds the report (an object with
    tables() and charts()) from a ReportRequest and the command's own options. The options
    every report takes (--period, --program, --json, --csv, --html), the "Generated ..." line
    and the rendering are wired here, once. ``shown``: the command's own options the line
    names after the period and program; ``more_meta``: what it adds about the built report."""
    from engine.reports.period import PERIOD_HELP

    common_options = [
        click.Option(["--period"], help=PERIOD_HELP),
        click.Option(["--program"], help="Only this program (key)."),
        click.Option(["--json", "as_json"], is_flag=True, help=JSON_HELP),
        click.Option(["--csv", "as_csv"], is_flag=True, help="Print the tables as CSV."),
        click.Option(
            ["--html"],
            type=click.Path(dir_okay=False, path_type=Path),
            help="Also write one self-contained HTML file with charts (opens offline).",
        ),
    ]

    def declare(build: Callable[..., Any]) -> click.Command:
        def run(
            state: CliState,
            period: str | None,
            program: str | None,
            as_json: bool,
            as_csv: bool,
            html: Path | None,
            **own: Any,
        ) -> None:
            from engine.reports.period import parse_period

            at = state.app().clock.now()
            named = {"period": period, "program": program, **{key: own[key] for key in shown}}
            filters = ", ".join(f"{k} {v}" for k, v in named.items() if v)
            meta = f"Generated {at.isoformat(timespec='seconds')}" + (
                f"; {filters}" if filters else ""
            )
            with transaction(state) as session:
                request = ReportRequest(
                    session, at, parse_period(period, at=at), program, state.settings
                )
                report = build(request, **own)
            _report_output(
                report,
                title if isinstance(title, str) else title(report),
                as_json=as_json,
                as_csv=as_csv,
                html=html,
                meta=f"{meta}; {more_meta(report)}" if more_meta else meta,
            )

        # The command's own arguments and options first in --help, then the common ones.
        own_params = list(reversed(getattr(build, "__click_params__", [])))
        return report_group.command(
            name, help=build.__doc__, params=[*own_params, *common_options]
        )(pass_state(run))

    return declare


@report_command(
    "campaign",
    title=lambda report: f"Campaign report: {report.campaign}",
    more_meta=lambda report: _runs_label(report.runs),
)
@click.argument("target", metavar="NAME|RUN_ID")
def report_campaign(request: ReportRequest, target: str) -> Any:
    """Did campaign NAME (all its runs, or run RUN_ID) work: funnel per step and channel,
    skips by reason, conversion of treatment vs holdout with absolute and relative lift (95%
    intervals, p-value) and a verdict in words, time to convert, points and revenue, A/B
    variants."""
    from engine.reports.campaign import campaign_report

    return campaign_report(request.session, target, period=request.period, program=request.program)


@report_command("deliverability", title="Deliverability", shown=["campaign"])
@click.option("--campaign", help="Only messages of this campaign.")
def report_deliverability(request: ReportRequest, campaign: str | None) -> Any:
    """Sent, delivered, bounced, failed, opens, clicks, opt-outs, spam reports and
    suppressions, by channel."""
    from engine.reports.deliverability import deliverability_report

    return deliverability_report(
        request.session,
        at=request.at,
        period=request.period,
        program=request.program,
        campaign=campaign,
    )


@report_command("retention", title="Retention", shown=["campaign"])
@click.option("--campaign", help="Only runs of this campaign.")
@click.option(
    "--event", default="renewal", show_default=True, help="The goal event that means renewed."
)
def report_retention(request: ReportRequest, campaign: str | None, event: str) -> Any:
    """Renewals due vs renewed and the retention rate by cohort (month of enrollment),
    treatment, contacted and holdout, with the lift over holdout."""
    from engine.reports.retention import retention_report

    return retention_report(
        request.session,
        at=request.at,
        event=event,
        period=request.period,
        program=request.program,
        campaign=campaign,
    )


@report_command("agents", title="Agents", shown=["campaign", "agent"])
@click.option("--agent", help="Only this agent (login).")
@click.option("--campaign", help="Only calls of this campaign.")
def report_agents(request: ReportRequest, agent: str | None, campaign: str | None) -> Any:
    """Agent performance [default period: the last 30 days]: calls, right-party contacts,
    contact rate, conversions, handle time, verification, callbacks kept, follow-up standard,
    escalations against the 20% ceiling, calls vs calling-plan targets. --program and
    --campaign narrow every figure to those calls."""
    from engine.reports.agents import agents_report

    return agents_report(
        request.session,
        at=request.at,
        settings=request.settings,
        period=request.period,
        program=request.program,
        campaign=campaign,
        agent=agent,
    )


@report_command("complaints", title="Complaints", shown=["campaign", "by"])
@click.option(
    "--by",
    type=click.Choice(["day", "week", "month"]),
    default="week",
    show_default=True,
    help="Time bucket.",
)
@click.option("--campaign", help="Only calls of this campaign.")
def report_complaints(request: ReportRequest, by: str, campaign: str | None) -> Any:
    """Complaints by category over time, then each complaint under its category with the
    member, agent and summary (calls with a complaint disposition and imported `complaint`
    events, those only without --campaign), and the cases' root causes: cases opened,
    resolved, overdue and reopened by category and root cause, time to resolve (median, 90th
    percentile) and the ten most recent summaries per root cause [default period: the last 30
    days]."""
    from engine.cases.report import with_root_causes
    from engine.reports.complaints import complaints_report

    report = complaints_report(
        request.session,
        at=request.at,
        settings=request.settings,
        period=request.period,
        program=request.program,
        campaign=campaign,
        by=by,
    )
    # The cases' root causes (engine/cases/report.py): a section of its own.
    return with_root_causes(
        request.session, report, at=request.at, period=request.period, program=request.program
    )
