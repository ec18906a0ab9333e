"""The `campaign` command line: parse, build the app, call ONE engine function, render.

No business logic lives here. Engine errors become one clean message (the traceback goes to
the debug log, shown with --debug).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.orm import Session

from engine import programs
from engine.app import App, build_app
from engine.clock import Clock, SystemClock
from engine.db import migrate
from engine.errors import EngineError
from engine.settings import Settings, load_settings

log = logging.getLogger("campaign")


# --------------------------------------------------------------------------- plumbing


class EngineGroup(click.Group):
    """Turns every EngineError into a one-line message; tracebacks only with --debug."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EngineError as exc:
            log.debug("engine error", exc_info=True)
            raise click.ClickException(_cause_chain(exc)) from exc


def _cause_chain(exc: BaseException) -> str:
    parts = [str(exc)]
    cause = exc.__cause__
    while cause is not None and not isinstance(cause, EngineError):
        text = str(cause).strip()
        if text and text not in parts[-1]:
            parts.append(text.splitlines()[0])
        cause = cause.__cause__
    return "\n  caused by: ".join(parts)


@dataclasses.dataclass
class CliState:
    overrides: dict[str, Any]
    # The one clock of this invocation; commands that need no database still read time here.
    clock: Clock = dataclasses.field(default_factory=SystemClock)
    _settings: Settings | None = None
    _app: App | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(**self.overrides)
        return self._settings

    def app(self, *, check_schema: bool = True) -> App:
        if self._app is None:
            self._app = build_app(self.settings, clock=self.clock, check_schema=check_schema)
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


pass_state = click.make_pass_decorator(CliState)


@contextmanager
def transaction(state: CliState) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    app = state.app()
    with app.sessions() as session, session.begin():
        yield session


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    return value


def emit_json(value: Any) -> None:
    click.echo(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False))


def console() -> Console:
    # Rich decorations only on a terminal; piped output stays plain text.
    return Console(highlight=False, soft_wrap=not sys.stdout.isatty())


def render_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [["" if cell is None else str(cell) for cell in row] for row in rows]
    if not sys.stdout.isatty():
        # Piped: plain aligned columns, never truncated, no box drawing (use --json to parse).
        widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
        if title:
            click.echo(title)
        for row in [list(columns), *cells]:
            click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        return
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column)
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))  # Text: values are never read as markup
    console().print(table)


json_option: Callable[[Callable[..., Any]], Callable[..., Any]] = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table."
)


# --------------------------------------------------------------------------- root


@click.group(cls=EngineGroup)
@click.option(
    "--database-url",
    envvar="CAMPAIGN_DATABASE_URL",
    help="SQLAlchemy URL of the database [env CAMPAIGN_DATABASE_URL; default sqlite:///campaign.db].",
)
@click.option("--debug", is_flag=True, help="Log debug output, including tracebacks, to stderr.")
@click.version_option(package_name="campaign-engine")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, debug: bool) -> None:
    """Outbound campaigns for loyalty and membership programs: email, SMS and agent calls."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, stream=sys.stderr)
    overrides = {"database_url": database_url} if database_url else {}
    state = CliState(overrides=overrides)
    ctx.obj = state
    ctx.call_on_close(state.close)


# --------------------------------------------------------------------------- db


@cli.group()
def db() -> None:
    """Create and upgrade the database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@json_option
@pass_state
def db_upgrade(state: CliState, revision: str, as_json: bool) -> None:
    """Bring the database schema up to date. The only way the schema changes."""
    app = state.app(check_schema=False)
    before, after = migrate.upgrade(app.engine, revision)
    result = {"database": _safe_url(app), "before": before, "after": after}
    if as_json:
        emit_json(result)
    elif before == after:
        click.echo(f"{result['database']} is already at {after}.")
    else:
        click.echo(f"{result['database']}: upgraded {before or 'empty'} -> {after}.")


@db.command("current")
@json_option
@pass_state
def db_current(state: CliState, as_json: bool) -> None:
    """Show the database's schema revision and the revision this engine needs."""
    app = state.app(check_schema=False)
    current, head = migrate.current_revision(app.engine), migrate.head_revision(app.engine)
    result = {
        "database": _safe_url(app),
        "current": current,
        "head": head,
        "up_to_date": current == head,
    }
    if as_json:
        emit_json(result)
    else:
        status = "up to date" if current == head else "behind: run `campaign db upgrade`"
        click.echo(f"{result['database']}: {current or 'empty'} (head {head}; {status})")


def _safe_url(app: App) -> str:
    return app.engine.url.render_as_string(hide_password=True)


# --------------------------------------------------------------------------- programs


@cli.group("programs")
def programs_group() -> None:
    """Client programs (each participant belongs to one)."""


@programs_group.command("add")
@click.argument("key")
@click.option("--name", required=True, help="Display name, used in messages.")
@click.option("--timezone", help="Program default IANA zone [default: settings].")
@click.option("--region", help="Phone region for numbers without + [default: settings].")
@json_option
@pass_state
def programs_add(
    state: CliState, key: str, name: str, timezone: str | None, region: str | None, as_json: bool
) -> None:
    """Create a program KEY."""
    settings = state.settings
    with transaction(state) as session:
        program = programs.add_program(
            session,
            key=key,
            name=name,
            timezone=timezone or settings.default_timezone,
            region=region or settings.default_region,
            at=state.app().clock.now(),
        )
        result = {
            "key": program.key,
            "name": program.name,
            "timezone": program.timezone,
            "region": program.region,
        }
    if as_json:
        emit_json(result)
    else:
        click.echo(f"Program {key!r} created ({result['timezone']}, region {result['region']}).")


@programs_group.command("list")
@json_option
@pass_state
def programs_list(state: CliState, as_json: bool) -> None:
    """List programs with their participant counts."""
    with transaction(state) as session:
        rows = programs.list_programs(session)
    if as_json:
        emit_json(rows)
    else:
        render_table(
            "Programs",
            ["key", "name", "timezone", "region", "participants"],
            [(r.key, r.name, r.timezone, r.region, r.participants) for r in rows],
        )


# ------------------------------------------------ participants, events, suppressions


@contextmanager
def _import_progress(path: Path, as_json: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar over the file's bytes, on a terminal only and for big files."""
    from rich.progress import BarColumn, Progress, TimeRemainingColumn

    try:
        size = path.stat().st_size
    except OSError:
        size = 0  # the engine reports the unreadable file
    if as_json or not sys.stderr.isatty() or size < 4 * 1024 * 1024:
        yield None
        return
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        "[progress.percentage]{task.percentage:>3.0f}%",
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task(f"importing {path.name}", total=size)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield update


def _run_import(
    state: CliState,
    kind: str,
    file: Path,
    program: str | None,
    fmt: str | None,
    rejects: Path | None,
    as_json: bool,
) -> None:
    from engine.participants.events import import_events
    from engine.participants.importer import import_participants

    app = state.app()
    run = import_participants if kind == "participants" else import_events
    with _import_progress(file, as_json) as progress:
        summary = run(
            app,
            file,
            program_key=program,
            fmt=fmt,
            rejects_path=rejects,
            at=app.clock.now(),
            progress=progress,
        )
    result = {
        "file": str(file),
        **to_jsonable(summary),
        "rows_per_second": round(summary.rows_per_second),
    }
    if as_json:
        emit_json(result)
        return
    click.echo(
        f"{file}: read {summary.read}, inserted {summary.inserted}, updated {summary.updated}, "
        f"unchanged {summary.unchanged}, rejected {summary.rejected} "
        f"({summary.seconds:.1f} s, {summary.rows_per_second:,.0f} rows/s)"
    )
    if summary.rejects_path is not None:
        click.echo(f"rejected rows and their reasons: {summary.rejects_path}")


_format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    help="File format [default: from the extension].",
)
_rejects_option = click.option(
    "--rejects",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write rejected rows [default: FILE's name + .rejects.csv, beside it].",
)
_program_option = click.option(
    "--program", help="Program key [default: the only program, if there is one]."
)


@cli.group("participants")
def participants_group() -> None:
    """Program members: import the member file, look one up, list them."""


@participants_group.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@_program_option
@_format_option
@_rejects_option
@json_option
@pass_state
def participants_import(
    state: CliState,
    file: Path,
    program: str | None,
    fmt: str | None,
    rejects: Path | None,
    as_json: bool,
) -> None:
    """Import (upsert) participants from a CSV or JSONL FILE. Bad rows go to a rejects file
    with every reason; unchanged rows are skipped; re-running a file changes nothing."""
    _run_import(state, "participants", file, program, fmt, rejects, as_json)


@participants_group.command("show")
@click.argument("external_id")
@_program_option
@json_option
@pass_state
def participants_show(
    state: CliState, external_id: str, program: str | None, as_json: bool
) -> None:
    """Show one participant: fields, consents, suppressions and the last 20 events."""
    from engine.participants.queries import show_participant

    with transaction(state) as session:
        view = show_participant(session, program, external_id)
    if as_json:
        emit_json(view)
        return
    fields = {
        k: v for k, v in view.items() if k not in ("consents", "suppressions", "recent_events")
    }
    render_table(f"Participant {external_id}", ["field", "value"], list(fields.items()))
    render_table(
        "Consents",
        ["channel", "status", "recorded_at", "source"],
        [list(c.values()) for c in view["consents"]],
    )
    render_table(
        "Suppressions",
        ["channel", "address", "reason", "source", "note", "created_at"],
        [list(s.values()) for s in view["suppressions"]],
    )
    render_table(
        "Recent events",
        ["type", "occurred_at", "points", "amount", "reference"],
        [list(e.values()) for e in view["recent_events"]],
    )


@participants_group.command("list")
@_program_option
@click.option("--status", help="Only this status (active, inactive, lapsed, closed).")
@click.option("--tier", help="Only this tier.")
@click.option("--locale", help="Only this locale ('zh' includes zh-Hans, zh-TW...).")
@click.option("--search", help="Part of the external id, name or email, or phone digits.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@json_option
@pass_state
def participants_list(
    state: CliState,
    program: str | None,
    status: str | None,
    tier: str | None,
    locale: str | None,
    search: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List a program's participants, ordered by external id."""
    from engine.participants.queries import LIST_FIELDS, list_participants

    with transaction(state) as session:
        rows = list_participants(
            session,
            program,
            status=status,
            tier=tier,
            locale=locale,
            search=search,
            limit=limit,
            offset=offset,
        )
    if as_json:
        emit_json(rows)
    else:
        render_table("Participants", LIST_FIELDS, [list(r.values()) for r in rows])


@cli.group("events")
def events_group() -> None:
    """Activity events (logins, redemptions, renewals, payments...)."""


@events_group.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@_program_option
@_format_option
@_rejects_option
@json_option
@pass_state
def events_import(
    state: CliState,
    file: Path,
    program: str | None,
    fmt: str | None,
    rejects: Path | None,
    as_json: bool,
) -> None:
    """Import activity events from a CSV or JSONL FILE (idempotent on the reference)."""
    _run_import(state, "events", file, program, fmt, rejects, as_json)


_channel_choice = click.Choice(["email", "sms", "call", "all"])


@cli.group("suppress")
def suppress_group() -> None:
    """Suppression lists: addresses and numbers never to contact."""


@suppress_group.command("add")
@click.argument("address")
@click.option("--channel", type=_channel_choice, required=True, help="Channel to suppress.")
@click.option(
    "--reason",
    required=True,
    type=click.Choice(
        [
            "opt_out",
            "bounce",
            "spam_report",
            "do_not_call",
            "erasure",
            "invalid",
            "complaint",
            "manual",
        ]
    ),
    help="Why ('erasure' keeps only a hash of the address and can never be removed).",
)
@click.option("--note", help="Free text kept with the entry.")
@json_option
@pass_state
def suppress_add(
    state: CliState, address: str, channel: str, reason: str, note: str | None, as_json: bool
) -> None:
    """Suppress ADDRESS (an email or a phone number) on a channel."""
    from engine.participants.suppressions import add_suppression

    with transaction(state) as session:
        entry = add_suppression(
            session,
            address,
            channel=channel,
            reason=reason,
            source="cli",
            note=note,
            at=state.app().clock.now(),
            default_region=state.settings.default_region,
        )
    if as_json:
        emit_json(entry)
    else:
        click.echo(f"Suppressed {entry.address or '(erased address)'} on {channel} ({reason}).")


@suppress_group.command("remove")
@click.argument("address")
@click.option("--channel", type=_channel_choice, required=True, help="Channel of the entry.")
@json_option
@pass_state
def suppress_remove(state: CliState, address: str, channel: str, as_json: bool) -> None:
    """Remove ADDRESS's suppression on a channel (erasure entries cannot be removed)."""
    from engine.participants.suppressions import remove_suppression

    with transaction(state) as session:
        entry = remove_suppression(
            session, address, channel=channel, default_region=state.settings.default_region
        )
    if as_json:
        emit_json(entry)
    else:
        click.echo(f"Removed the {entry.reason} suppression of {entry.address} on {channel}.")


@suppress_group.command("list")
@click.option("--channel", type=_channel_choice, help="Only this channel.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@json_option
@pass_state
def suppress_list(state: CliState, channel: str | None, limit: int, as_json: bool) -> None:
    """List suppressions, newest first."""
    from engine.participants.suppressions import list_suppressions

    with transaction(state) as session:
        rows = list_suppressions(session, channel=channel, limit=limit)
    if as_json:
        emit_json(rows)
    else:
        render_table(
            "Suppressions",
            ["channel", "address", "reason", "source", "note", "created_at"],
            [
                (r.channel, r.address or "(erased)", r.reason, r.source, r.note, r.created_at)
                for r in rows
            ],
        )


# ------------------------------------------------ demo


@cli.command("demo")
@click.option(
    "--participants",
    type=click.IntRange(min=1),
    default=5000,
    show_default=True,
    help="How many members the synthetic program has.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the data set.")
@click.option(
    "--folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo"),
    show_default=True,
    help="Where the demo writes its database and files (recreated on every run).",
)
@json_option
@pass_state
def demo(state: CliState, participants: int, seed: int, folder: Path, as_json: bool) -> None:
    """Run the engine on a synthetic loyalty program: no credentials, no server.

    Uses its own SQLite database FOLDER/campaign.db (never CAMPAIGN_DATABASE_URL), created
    fresh on every run.
    """
    # Imported here: the demo pulls in the generator and renderers no other command needs.
    from engine.demo.render import render_plain, render_rich
    from engine.demo.run import DemoStep, run_demo

    def show_step(step: DemoStep) -> None:
        click.echo(f"{step.title}...", err=True)

    # Progress lines only for a person at a terminal, never into piped or JSON output.
    on_step = show_step if not as_json and sys.stderr.isatty() else None
    report = run_demo(
        folder,
        participants=participants,
        seed=seed,
        clock=state.clock,
        campaigns_dir=state.settings.campaigns_dir,
        on_step=on_step,
    )
    if as_json:
        emit_json(report)
    elif sys.stdout.isatty():
        render_rich(report, console())
    else:
        click.echo(render_plain(report))


# ------------------------------------------------ campaign definitions: validate


@cli.command("validate")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@json_option
@pass_state
def validate_command(state: CliState, files: tuple[Path, ...], as_json: bool) -> None:
    """Check campaign files (default: every campaigns/*.yaml) without a database: schema,
    templates, audience SQL. Prints "ok" or each error as file:line field: message; exits 1
    on any error."""
    from engine.definitions.validation import validate_campaigns

    settings = state.settings
    report = validate_campaigns(
        list(files),
        campaigns_dir=settings.campaigns_dir,
        templates_dir=settings.templates_dir,
        at=state.clock.now(),
    )
    if as_json:
        emit_json(report.as_dict())
    else:
        for file in report.files:
            if file.ok:
                click.echo(f"{file.path}: ok")
            for error in file.errors:
                click.echo(str(error))
            for warning in file.warnings:
                click.echo(f"warning: {warning}")
        if not report.audience_checked:
            click.echo("note: engine.audience is not available; audiences were not compiled")
    if not report.ok:
        raise SystemExit(1)


# ------------------------------------------------ audiences, plan, explain, launch, runs


def _campaign(state: CliState, name: str) -> Any:
    from engine.definitions.loader import load_campaign

    return load_campaign(state.settings.campaigns_dir, name)


def _at(state: CliState, loaded: Any, at: str | None) -> datetime:
    """--at in its own read-only transaction (a launch must start its own transaction)."""
    from engine.planning import resolve_at

    with transaction(state) as session:
        return resolve_at(session, loaded, at, now=state.app().clock.now())


def _global_cap(state: CliState) -> Any:
    from engine.planning import GlobalCap

    return GlobalCap.from_settings(state.settings)


at_option: Callable[[Callable[..., Any]], Callable[..., Any]] = click.option(
    "--at",
    "at",
    metavar="TIME",
    help="Evaluate at this ISO 8601 time (naive = the program's time zone) [default: now].",
)


def _show_value(value: Any, nested: bool = False) -> str:
    if isinstance(value, dict):
        if nested:
            return "(" + ", ".join(f"{k} {_show_value(v, True)}" for k, v in value.items()) + ")"
        return "; ".join(f"{k}: {_show_value(v, True)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_show_value(v, True) for v in value) if value else "none"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return "-" if value is None else str(value)


@cli.command("plan")
@click.argument("name")
@at_option
@json_option
@pass_state
def plan_command(state: CliState, name: str, at: str | None, as_json: bool) -> None:
    """Dry run of campaign NAME: audience, exclusions by reason, groups, volumes, a sample.
    Changes nothing."""
    from engine.planning import plan

    loaded = _campaign(state, name)
    when = _at(state, loaded, at)
    with transaction(state) as session:
        report = plan(session, loaded, at=when, global_cap=_global_cap(state))
    if as_json:
        emit_json(report)
        return
    click.echo(
        f"Plan for {report.campaign} (program {report.program}) at {report.at.isoformat()}"
        f" [definition {report.definition_hash[:12]}]"
    )
    click.echo(f"Audience: {report.audience}")
    render_table(
        "Excluded (each member under the first reason that applies)",
        ["reason", "why", "members"],
        [(_show_value(e.reason), _show_value(e.description), e.count) for e in report.exclusions],
    )
    click.echo(
        f"Eligible: {report.eligible} (treatment {report.treatment}, holdout {report.holdout}"
        f" = {report.holdout_percent}%)"
    )
    render_table(
        "Projected volume per step (treatment reachable on the step's channel)",
        ["step", "channel", "projected"],
        [(v.step_id, v.channel, v.projected) for v in report.steps],
    )
    if report.sample:
        render_table(
            "Sample of eligible members",
            ["external_id", "group", "values"],
            [
                (
                    m.external_id,
                    m.group,
                    _show_value("; ".join(f"{k}: {_show_value(v)}" for k, v in m.values.items())),
                )
                for m in report.sample
            ],
        )
    if report.note:
        click.echo(f"note: {report.note}")


def _echo_tree(node: Any, depth: int = 1) -> None:
    mark = "yes" if node.passed else "no "
    actual = "" if node.children else f"  (actual: {_show_value(node.actual)})"
    click.echo(f"{'  ' * depth}[{mark}] {node.condition}{actual}")
    for child in node.children:
        _echo_tree(child, depth + 1)


@cli.command("explain")
@click.argument("name")
@click.argument("external_id")
@at_option
@json_option
@pass_state
def explain_command(
    state: CliState, name: str, external_id: str, at: str | None, as_json: bool
) -> None:
    """Why member EXTERNAL_ID would or would not be enrolled by campaign NAME."""
    from engine.planning import explain

    loaded = _campaign(state, name)
    when = _at(state, loaded, at)
    with transaction(state) as session:
        result = explain(session, loaded, external_id, at=when, global_cap=_global_cap(state))
    if as_json:
        emit_json(result)
        return
    click.echo(f"{result.external_id} in {result.campaign} at {result.at.isoformat()}:")
    click.echo(f"  verdict: {result.verdict}")
    click.echo("Audience:")
    _echo_tree(result.audience)
    click.echo("Exclusions (in order):")
    for check in result.exclusions:
        flag = "EXCLUDED" if check.excluded else "ok"
        click.echo(f"  [{flag}] {check.reason}: {check.description}")
        click.echo(f"      actual: {_show_value(check.actual)}")


@cli.command("launch")
@click.argument("name")
@at_option
@json_option
@pass_state
def launch_command(state: CliState, name: str, at: str | None, as_json: bool) -> None:
    """Launch campaign NAME: create its run and enroll the eligible members. Safe to repeat:
    a second launch of the same one-off campaign or cron fire time enrolls nobody."""
    from engine.planning import launch

    loaded = _campaign(state, name)
    when = _at(state, loaded, at)
    with transaction(state) as session:
        result = launch(session, loaded, at=when, global_cap=_global_cap(state))
    if as_json:
        emit_json({**dataclasses.asdict(result), "message": result.message})
    else:
        click.echo(result.message)


@cli.group("runs")
def runs_group() -> None:
    """Launched campaign runs."""


@runs_group.command("list")
@click.option("--campaign", help="Only runs of this campaign.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@json_option
@pass_state
def runs_list(state: CliState, campaign: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first."""
    from engine.runs import list_runs

    with transaction(state) as session:
        rows = list_runs(session, campaign=campaign, limit=limit)
    if as_json:
        emit_json(rows)
        return
    render_table(
        "Campaign runs",
        ["run", "campaign", "program", "fire", "status", "launched", "enrolled", "holdout"],
        [
            (
                r.id,
                r.campaign,
                r.program,
                r.fire_key,
                _show_value(r.status + (f" ({r.status_reason})" if r.status_reason else "")),
                r.launched_at.isoformat(timespec="minutes"),
                r.enrolled,
                r.holdout,
            )
            for r in rows
        ],
    )


@runs_group.command("show")
@click.argument("run", type=int)
@json_option
@pass_state
def runs_show(state: CliState, run: int, as_json: bool) -> None:
    """Show run RUN: status, definition hash, enrollments by group and state."""
    from engine.runs import show_run

    with transaction(state) as session:
        detail = show_run(session, run)
    if as_json:
        emit_json(detail)
        return
    click.echo(
        f"Run {detail.id}: {detail.campaign} (program {detail.program}), fire {detail.fire_key}"
    )
    status = detail.status
    if detail.status_changed_at is not None:
        status += f" since {detail.status_changed_at.isoformat()}"
    if detail.status_reason:
        status += f" ({detail.status_reason})"
    click.echo(f"  status: {status}")
    click.echo(f"  launched: {detail.launched_at.isoformat()}")
    click.echo(f"  definition sha256: {detail.definition_hash}")
    click.echo(f"  enrolled: {detail.enrolled} (holdout {detail.holdout})")
    render_table(
        "Enrollments",
        ["group", "state", "members"],
        [
            (group, st, n)
            for group, states in detail.by_group_state.items()
            for st, n in states.items()
        ],
    )


def _status_change(change: Any, as_json: bool) -> None:
    if as_json:
        emit_json(change)
        return
    text = f"Run {change.run_id} ({change.campaign}): {change.before} -> {change.after}"
    if change.exited:
        text += f"; {change.exited} open enrollments exited"
    click.echo(text + ".")


@cli.command("pause")
@click.argument("run", type=int)
@click.option("--reason", help="Why (kept with the run).")
@json_option
@pass_state
def pause_command(state: CliState, run: int, reason: str | None, as_json: bool) -> None:
    """Pause run RUN: nothing is sent or called until it is resumed."""
    from engine.runs import pause_run

    with transaction(state) as session:
        change = pause_run(session, run, at=state.app().clock.now(), reason=reason)
    _status_change(change, as_json)


@cli.command("resume")
@click.argument("run", type=int)
@json_option
@pass_state
def resume_command(state: CliState, run: int, as_json: bool) -> None:
    """Resume paused run RUN."""
    from engine.runs import resume_run

    with transaction(state) as session:
        change = resume_run(session, run, at=state.app().clock.now())
    _status_change(change, as_json)


@cli.command("cancel")
@click.argument("run", type=int)
@click.option("--reason", help="Why (kept with the run and on exited enrollments).")
@json_option
@pass_state
def cancel_command(state: CliState, run: int, reason: str | None, as_json: bool) -> None:
    """Cancel run RUN for good: nothing more is sent; open enrollments exit."""
    from engine.runs import cancel_run

    with transaction(state) as session:
        change = cancel_run(session, run, at=state.app().clock.now(), reason=reason)
    _status_change(change, as_json)


# ------------------------------------------------ templates: preview


@cli.command("preview")
@click.argument("name")
@click.argument("step")
@click.argument("external_id")
@click.option(
    "--variant",
    help="A/B steps: render this variant [default: the member's own variant, assigned "
    "deterministically by weight, as the sender does].",
)
@json_option
@pass_state
def preview_command(
    state: CliState, name: str, step: str, external_id: str, variant: str | None, as_json: bool
) -> None:
    """Show exactly what member EXTERNAL_ID would receive for STEP of campaign NAME, in their
    locale: email subject, headers, text and HTML; SMS body, encoding and segments; or the
    call script. Sends nothing."""
    from engine.definitions.loader import load_campaign
    from engine.preview import preview

    loaded = load_campaign(state.settings.campaigns_dir, name)
    with transaction(state) as session:
        result = preview(
            session, loaded, step, external_id, settings=state.settings, variant=variant
        )
    if as_json:
        emit_json(result)
        return
    chosen = f", variant {result.variant}" if result.variant else ""
    click.echo(
        f"{result.campaign} / {result.step} ({result.channel}, template {result.template}"
        f"{chosen}) for {result.external_id}, locale {result.locale or 'default'}"
    )
    if result.email is not None:
        email = result.email
        for key, value in email["headers"].items():
            click.echo(f"{key}: {value}")
        if email["template_id"]:
            click.echo(f"SendGrid dynamic template {email['template_id']} with data:")
            click.echo(json.dumps(email["dynamic_template_data"], indent=2, ensure_ascii=False))
        else:
            click.echo(f"Subject: {email['subject']}")
            click.echo("\n--- text ---")
            click.echo(email["text"])
            click.echo("--- html ---")
            click.echo(email["html"])
    if result.sms is not None:
        sms = result.sms
        click.echo(
            f"{sms['characters']} characters, {sms['encoding']}, {sms['segments']} segment(s)"
        )
        click.echo(sms["body"])
    if result.call is not None:
        click.echo(result.call["script"])
    for note in result.notes:
        click.echo(f"note: {note}")


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="campaign")


if __name__ == "__main__":
    main()
