"""The `campaign` command line: parse, build the app, call ONE engine function, render.

No business logic lives here. Engine errors become one clean message (the traceback goes to
the debug log, shown with --debug). This module holds the root group and registers the command
groups, one module each in engine/cli/ (the shared state and output are engine/cli/common.py).
The root group knows each command by name and module and imports a module only when one of
its commands runs (or --help lists them all); each command imports what it uses inside its
function, so start-up stays fast (tests/test_startup.py).
"""

from __future__ import annotations

import atexit
import gc
import importlib
from collections.abc import Sequence

import click

from engine.cli.common import CliState, EngineGroup
from engine.clock import SystemClock
from engine.logs import LOG_FORMATS, configure_logging

# A process runs one command, then ends: the interpreter's last collections would walk every
# object its imports made (SQLAlchemy's alone, about 50 ms of CPU; a claim's, 60-70 ms) to
# free memory the system takes back at exit anyway. Frozen at exit, they are left out of those
# walks (#18). What a command opens it closes itself (the App on the context's close).
atexit.register(gc.freeze)

# While a command runs, the young generation is collected after this many new objects rather
# than CPython's 700. A command's imports and rows are objects that live until it ends: at 700,
# start-up runs about 160 collections and one full one that walk them for nothing to free
# (#18). Cycles a command drops are still collected, a few times less often; the previous
# thresholds come back when the command ends (a test process, an embedding caller).
COMMAND_YOUNG_GC_THRESHOLD = 30_000

# Every command and group: its name -> "module in engine/cli:attribute" (`campaign --help`
# lists them sorted).
COMMANDS: dict[str, str] = {
    # setting up
    "db": "getting_started:db",
    "init": "getting_started:init_command",
    "demo": "getting_started:demo",
    "programs": "programs:programs_group",
    # members and their data
    "participants": "participants:participants_group",
    "events": "participants:events_group",
    "suppress": "participants:suppress_group",
    "suppressions": "suppressions:suppressions_group",
    # campaigns and their runs
    "validate": "campaigns:validate_command",
    "plan": "campaigns:plan_command",
    "explain": "campaigns:explain_command",
    "launch": "campaigns:launch_command",
    "preview": "campaigns:preview_command",
    "runs": "runs:runs_group",
    "pause": "runs:pause_command",
    "resume": "runs:resume_command",
    "cancel": "runs:cancel_command",
    # sending
    "dispatch": "outbox:dispatch_command",
    "outbox": "outbox:outbox_group",
    "send-test": "outbox:send_test_command",
    # calls and cases
    "agents": "agents:agents_group",
    "calls": "calls:calls_group",
    "cases": "cases:cases_group",
    "users": "users:users_group",
    # time: advance, tick, the daemons
    "advance": "scheduling:advance_command",
    "tick": "scheduling:tick_command",
    "scheduler": "scheduling:scheduler_command",
    "serve": "scheduling:serve_command",
    # reports
    "report": "report:report_group",
    "reports": "subscriptions:reports_group",
}


class RootGroup(EngineGroup):
    """Loads a command's module when the command is asked for: `campaign runs list` does not
    import the other thirteen command modules (about 50 ms)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, attribute = COMMANDS[cmd_name].split(":")
        command: click.Command = getattr(
            importlib.import_module(f"engine.cli.{module_name}"), attribute
        )
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand:
            # click suggests a close name from the loaded commands; here none are loaded yet.
            raise click.exceptions.NoSuchCommand(args[0], possibilities=COMMANDS, ctx=ctx) from None


@click.group(cls=RootGroup)
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
    thresholds = gc.get_threshold()
    gc.set_threshold(COMMAND_YOUNG_GC_THRESHOLD, *thresholds[1:])
    ctx.call_on_close(lambda: gc.set_threshold(*thresholds))
    configure_logging(debug=debug, log_format=log_format)
    overrides = {"database_url": database_url} if database_url else {}
    # An embedding caller (a test, a simulation) may pass obj=CliState(..., clock=...): every
    # command of this invocation then reads that clock. Users always get the system clock.
    preset = ctx.obj if isinstance(ctx.obj, CliState) else None
    clock = preset.clock if preset is not None else SystemClock()
    state = CliState(overrides={**(preset.overrides if preset else {}), **overrides}, clock=clock)
    ctx.obj = state
    ctx.call_on_close(state.close)


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="campaign")


if __name__ == "__main__":
    main()
