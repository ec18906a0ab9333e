"""The `campaign` command line: parse, build the app, call ONE engine function, render.

No business logic lives here. Engine errors become one clean message (the traceback goes to
the debug log, shown with --debug). This module holds the root group and registers the command
groups, one module each in engine/cli/ (the shared state and output are engine/cli/common.py).
Registering imports only click and those modules: each command imports what it uses inside
its function, so start-up stays fast (tests/test_startup.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from engine.cli import (
    agents,
    calls,
    campaigns,
    cases,
    getting_started,
    outbox,
    participants,
    programs,
    report,
    runs,
    scheduling,
    subscriptions,
    suppressions,
    users,
)
from engine.cli.common import CliState, EngineGroup
from engine.clock import SystemClock
from engine.logs import LOG_FORMATS, configure_logging


@click.group(cls=EngineGroup)
@click.option(
    "--database-url",
    envvar="CAMPAIGN_DATABASE_URL",
    help="SQLAlchemy URL of the database [env CAMPAIGN_DATABASE_URL; default sqlite:///campaign.db].",
)
@click.option("--debug", is_flag=True, help="Log debug output, including tracebacks, to stderr.")
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    show_default=True,
    envvar="CAMPAIGN_LOG_FORMAT",
    show_envvar=True,
    help="Log lines on stderr as text, or as one JSON object per line (timestamp, level, "
    "logger, message and fields such as run_id).",
)
@click.version_option(package_name="campaign-engine")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, debug: bool, log_format: str) -> None:
    """Outbound campaigns for loyalty and membership programs: email, SMS and agent calls."""
    configure_logging(debug=debug, log_format=log_format)
    overrides = {"database_url": database_url} if database_url else {}
    # An embedding caller (a test, a simulation) may pass obj=CliState(..., clock=...): every
    # command of this invocation then reads that clock. Users always get the system clock.
    preset = ctx.obj if isinstance(ctx.obj, CliState) else None
    clock = preset.clock if preset is not None else SystemClock()
    state = CliState(overrides={**(preset.overrides if preset else {}), **overrides}, clock=clock)
    ctx.obj = state
    ctx.call_on_close(state.close)


# Every command and group, by the module that holds it (`campaign --help` lists them sorted).
COMMANDS: list[click.Command] = [
    # setting up
    getting_started.db,
    getting_started.init_command,
    getting_started.demo,
    programs.programs_group,
    # members and their data
    participants.participants_group,
    participants.events_group,
    participants.suppress_group,
    suppressions.suppressions_group,
    # campaigns and their runs
    campaigns.validate_command,
    campaigns.plan_command,
    campaigns.explain_command,
    campaigns.launch_command,
    campaigns.preview_command,
    runs.runs_group,
    runs.pause_command,
    runs.resume_command,
    runs.cancel_command,
    # sending
    outbox.dispatch_command,
    outbox.outbox_group,
    outbox.send_test_command,
    # calls and cases
    agents.agents_group,
    calls.calls_group,
    cases.cases_group,
    users.users_group,
    # time: advance, tick, the daemons
    scheduling.advance_command,
    scheduling.tick_command,
    scheduling.scheduler_command,
    scheduling.serve_command,
    # reports
    report.report_group,
    subscriptions.reports_group,
]
for command in COMMANDS:
    cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="campaign")


if __name__ == "__main__":
    main()
