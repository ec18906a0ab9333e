"""The `campaign` command line: parse, build the app, call ONE engine function, render.

No business logic lives here. Engine errors become one clean message (the traceback goes to
the debug log, shown with --debug).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click

from engine.clock import Clock, SystemClock
from engine.errors import EngineError
from engine.logs import LOG_FORMATS, JsonFormatter, configure_logging

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy.orm import Session

    from engine.app import App
    from engine.reports.period import Period
    from engine.settings import Settings

# Start-up time: every command pays for what this module imports, so it imports only click
# and the engine's error and clock types. A command imports what it uses inside its function
# (tests/test_startup.py checks this; bench/bench_startup.py measures it).

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
        except Exception as exc:
            # SQLite: another process held the write lock past the busy timeout.
            if not _is_database_locked(exc):
                raise
            log.debug("database locked", exc_info=True)
            raise click.ClickException(
                "the database is busy (another process is writing to it); try again"
            ) from exc


def _is_database_locked(exc: Exception) -> bool:
    # sqlalchemy is already imported when a database error is raised; --help never loads it.
    operational_error = getattr(sys.modules.get("sqlalchemy.exc"), "OperationalError", None)
    return (
        operational_error is not None
        and isinstance(exc, operational_error)
        and "database is locked" in str(exc.orig).lower()
    )


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
            from engine.settings import load_settings

            self._settings = load_settings(**self.overrides)
        return self._settings

    def app(self, *, check_schema: bool = True) -> App:
        if self._app is None:
            from engine.app import build_app

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
    if hasattr(value, "as_json"):  # a report that shapes its own JSON
        return to_jsonable(value.as_json())
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
    from rich.console import Console

    # Rich decorations only on a terminal; piped output stays plain text.
    return Console(highlight=False, soft_wrap=not sys.stdout.isatty())


# Columns of identifiers (typed back into commands): their numbers get no thousands separator.
_ID_COLUMNS = frozenset({"#", "id", "task", "run", "seq", "position"})


def _cell(value: Any, column: str) -> str:
    """A table cell: counts with thousands separators (the JSON output keeps raw numbers)."""
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        is_id = column in _ID_COLUMNS or column.endswith((" id", "_id"))
        return str(value) if is_id else f"{value:,}"
    return str(value)


def render_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[_cell(v, c) for v, c in zip(row, columns, strict=True)] for row in rows]
    if not sys.stdout.isatty():
        # Piped: plain aligned columns, never truncated, no box drawing (use --json to parse).
        # Aligned by terminal cells, not characters: a CJK character takes two (杨静 is 4 wide).
        from rich.cells import cell_len

        widths = [
            max([cell_len(c), *(cell_len(r[i]) for r in cells)]) for i, c in enumerate(columns)
        ]
        if title:
            click.echo(title)
        for row in [list(columns), *cells]:
            padded = (v + " " * (w - cell_len(v)) for v, w in zip(row, widths, strict=True))
            click.echo("  ".join(padded).rstrip())
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, justify="left")
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))  # Text: values are never read as markup
    console().print(table)


JSON_HELP = "Print machine-readable JSON instead of a table."
json_option: Callable[[Callable[..., Any]], Callable[..., Any]] = click.option(
    "--json", "as_json", is_flag=True, help=JSON_HELP
)


# --------------------------------------------------------------------------- root


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
    from engine.db import migrate

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
    from engine.db import migrate

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


# --------------------------------------------------------------------------- init


@cli.command("init")
@click.argument(
    "folder", required=False, default=".", type=click.Path(file_okay=False, path_type=Path)
)
@click.option("--program", "program_key", required=True, help="The program's key, e.g. northwind.")
@click.option("--name", required=True, help="The program's display name, used in messages.")
@click.option("--timezone", default="America/New_York", show_default=True, help="IANA zone.")
@click.option(
    "--region", default="US", show_default=True, help="Phone region for numbers without +."
)
@click.option(
    "--email-from",
    prompt="Sender of your emails (Name <address>)",
    help='The sender of every email, e.g. "Northwind Rewards <rewards@northwind.example>".',
)
@click.option(
    "--postal-address",
    prompt="Your program's postal address (printed in every marketing email)",
    help="The postal address in the footer of every marketing email.",
)
@click.option("--force", is_flag=True, help="Overwrite files the folder already has.")
@json_option
def init_command(
    folder: Path,
    program_key: str,
    name: str,
    timezone: str,
    region: str,
    email_from: str,
    postal_address: str,
    force: bool,
    as_json: bool,
) -> None:
    """Make FOLDER (default: here) a working folder for a new program: campaign.toml, the
    example campaigns in campaigns/ naming the program, their templates/, and the next
    commands to run. Refuses to overwrite a file unless --force."""
    from engine.working_folder import FolderSetup, init_folder

    setup = FolderSetup(program_key, name, timezone, region, email_from, postal_address)
    result = init_folder(folder, setup, force=force)
    if as_json:
        emit_json(result)
        return
    replaced = f" ({len(result.overwritten)} overwritten)" if result.overwritten else ""
    click.echo(
        f"Wrote {len(result.written)} files in {folder}{replaced}: campaign.toml, "
        f"campaigns/ ({', '.join(result.campaigns)}) and templates/."
    )
    click.echo("Next:")
    for command in result.next_commands:
        click.echo(f"  {command}")


# --------------------------------------------------------------------------- programs


@cli.group("programs")
def programs_group() -> None:
    """Client programs (each participant belongs to one)."""


@programs_group.command("add")
@click.argument("key")
@click.option("--name", required=True, help="Display name, used in messages.")
@click.option("--timezone", help="Program default IANA zone [default: settings].")
@click.option("--region", help="Phone region for numbers without + [default: settings].")
@click.option(
    "--sms-opt-out-notice/--no-sms-opt-out-notice",
    default=True,
    show_default=True,
    help="Append the opt-out sentence to the first SMS of each campaign.",
)
@click.option(
    "--holidays",
    metavar="CALENDAR",
    help="Public-holiday calendar business days skip: a country, optionally with a "
    "subdivision (US, US-CA, CN, GB-SCT) [default: none, Monday to Friday].",
)
@json_option
@pass_state
def programs_add(
    state: CliState,
    key: str,
    name: str,
    timezone: str | None,
    region: str | None,
    sms_opt_out_notice: bool,
    holidays: str | None,
    as_json: bool,
) -> None:
    """Create a program KEY."""
    from engine import programs

    settings = state.settings
    with transaction(state) as session:
        program = programs.add_program(
            session,
            key=key,
            name=name,
            timezone=timezone or settings.default_timezone,
            region=region or settings.default_region,
            at=state.app().clock.now(),
            sms_opt_out_notice=sms_opt_out_notice,
            holidays=holidays,
        )
        result = {
            "key": program.key,
            "name": program.name,
            "timezone": program.timezone,
            "region": program.region,
            "sms_opt_out_notice": program.sms_opt_out_notice,
            "holidays": program.holidays,
        }
    if as_json:
        emit_json(result)
    else:
        calendar = f", {result['holidays']} holidays" if result["holidays"] else ""
        click.echo(
            f"Program {key!r} created ({result['timezone']}, region {result['region']}{calendar})."
        )


@programs_group.command("list")
@json_option
@pass_state
def programs_list(state: CliState, as_json: bool) -> None:
    """List programs with their participant counts."""
    from engine import programs

    with transaction(state) as session:
        rows = programs.list_programs(session)
    if as_json:
        emit_json(rows)
    else:
        render_table(
            "Programs",
            ["key", "name", "timezone", "region", "participants", "SMS opt-out notice", "holidays"],
            [
                (
                    r.key,
                    r.name,
                    r.timezone,
                    r.region,
                    r.participants,
                    "on" if r.sms_opt_out_notice else "off",
                    r.holidays or "none (Mon-Fri)",
                )
                for r in rows
            ],
        )


@programs_group.command("set")
@click.argument("key")
@click.option(
    "--sms-opt-out-notice/--no-sms-opt-out-notice",
    default=None,
    help="Append (or not) the opt-out sentence to the first SMS of each campaign.",
)
@click.option(
    "--holidays",
    metavar="CALENDAR",
    help="Public-holiday calendar business days skip (US, US-CA, CN, GB-SCT...); 'none' "
    "for Monday to Friday.",
)
@json_option
@pass_state
def programs_set(
    state: CliState,
    key: str,
    sms_opt_out_notice: bool | None,
    holidays: str | None,
    as_json: bool,
) -> None:
    """Change settings of program KEY (messages already queued keep their text; retries
    already scheduled keep their time)."""
    from engine import programs

    if sms_opt_out_notice is None and holidays is None:
        raise click.UsageError(
            "nothing to change: give --sms-opt-out-notice (or its --no- form) or --holidays"
        )
    with transaction(state) as session:
        if sms_opt_out_notice is not None:
            program = programs.set_sms_opt_out_notice(session, key, sms_opt_out_notice)
        if holidays is not None:
            code = None if holidays.strip().lower() in ("none", "") else holidays
            program = programs.set_holidays(session, key, code)
        calendar = program.holidays
        result = {
            "key": program.key,
            "sms_opt_out_notice": program.sms_opt_out_notice,
            "holidays": program.holidays,
        }
    if as_json:
        emit_json(result)
    else:
        if sms_opt_out_notice is not None:
            state_word = "on" if sms_opt_out_notice else "off"
            click.echo(f"Program {key!r}: SMS opt-out notice {state_word}.")
        if holidays is not None:
            shown = calendar or "none (business days are Monday to Friday)"
            click.echo(f"Program {key!r}: holiday calendar {shown}.")


# ------------------------------------------------ participants, events, suppressions


@contextmanager
def _import_progress(path: Path, as_json: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar over the file's bytes, on a terminal only and for big files."""
    from rich.console import Console
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
    encoding: str | None = None,
    **options: Any,
) -> None:
    from engine.participants.events import import_events
    from engine.participants.importer import import_participants

    app = state.app()
    run: Any = import_participants if kind == "participants" else import_events
    imported_at = app.clock.now()
    with _import_progress(file, as_json) as progress:
        summary = run(
            app,
            file,
            program_key=program,
            fmt=fmt,
            rejects_path=rejects,
            at=imported_at,
            progress=progress,
            encoding=encoding,
            **options,
        )
    result = {
        "file": str(file),
        **to_jsonable(summary),
        "rows_per_second": round(summary.rows_per_second),
    }
    if kind == "events":  # the new events may be conversions of enrolled members
        from engine.conversions import match_imported

        result["conversions"] = match_imported(app, imported_at=imported_at, at=imported_at)
    if as_json:
        emit_json(result)
        _fail_if_all_rejected(summary.read, summary.rejected)
        return
    click.echo(
        f"{file}: read {summary.read:,}, inserted {summary.inserted:,}, "
        f"updated {summary.updated:,}, unchanged {summary.unchanged:,}, "
        f"rejected {summary.rejected:,} "
        f"({summary.seconds:.1f} s, {summary.rows_per_second:,.0f} rows/s)"
    )
    if summary.rejects_path is not None:
        click.echo(f"rejected rows and their reasons: {summary.rejects_path}")
    if "conversions" in result:
        click.echo(f"conversions matched: {result['conversions']}")
    _fail_if_all_rejected(summary.read, summary.rejected)


def _fail_if_all_rejected(read: int, rejected: int) -> None:
    """Exit 1 (the summary is printed) when the file had rows and none was accepted: a
    wrong file, a wrong --format or --encoding, a changed export; a cron job must notice."""
    if read and rejected == read:
        click.echo(f"error: every row was rejected ({rejected:,})", err=True)
        raise SystemExit(1)


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
_encoding_option = click.option(
    "--encoding",
    help="The file's encoding, e.g. cp1252 or latin-1 [default: UTF-8, with or without BOM; "
    "a file that is not UTF-8 is refused, naming the line].",
)


@cli.group("participants")
def participants_group() -> None:
    """Program members: import the member file, look one up, list them."""


@participants_group.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@_program_option
@_format_option
@_rejects_option
@_encoding_option
@click.option(
    "--clear-blank",
    is_flag=True,
    help="A blank cell clears the stored value (status and points go back to their "
    "defaults) [default: a blank cell keeps it]. Columns the file lacks and consents are "
    "never cleared.",
)
@json_option
@pass_state
def participants_import(
    state: CliState,
    file: Path,
    program: str | None,
    fmt: str | None,
    rejects: Path | None,
    encoding: str | None,
    clear_blank: bool,
    as_json: bool,
) -> None:
    """Import (upsert) participants from a CSV or JSONL FILE. Columns the file lacks and
    blank cells keep the stored values. Bad rows go to a rejects file with every reason;
    unchanged rows are skipped; re-running a file changes nothing. Exits 1 when every row
    was rejected."""
    _run_import(
        state,
        "participants",
        file,
        program,
        fmt,
        rejects,
        as_json,
        encoding=encoding,
        clear_blank=clear_blank,
    )


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


@participants_group.command("erase")
@click.argument("external_ids", nargs=-1)
@click.option(
    "--file",
    "ids_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file of external ids, one per line (a bulk request).",
)
@_program_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_state
def participants_erase(
    state: CliState,
    external_ids: tuple[str, ...],
    ids_file: Path | None,
    program: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Erase members' personal data from every table (GDPR/CCPA); prints a receipt per member.
    Keeps hashed suppressions (never contacted again, re-import refused), report counts and
    the caller log's record that calls happened, without contact details."""
    from engine.participants.erasure import erase_participant

    ids = list(external_ids)
    if ids_file is not None:
        ids += [line.strip() for line in ids_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise click.UsageError("name at least one EXTERNAL_ID, or --file")
    if not yes:
        if not _stdin_is_terminal():
            raise click.UsageError("erasure cannot be undone: confirm with --yes")
        click.confirm(f"Erase {len(ids):,} member(s)? This cannot be undone", abort=True)
    at = state.app().clock.now()
    receipts = []
    with transaction(state) as session:
        for external_id in ids:
            receipts.append(
                erase_participant(
                    session,
                    program,
                    external_id,
                    at=at,
                    default_region=state.settings.default_region,
                )
            )
    if as_json:
        emit_json(receipts)
        return
    for receipt in receipts:
        if receipt.already_erased:
            click.echo(f"{receipt.external_id} ({receipt.program}): already erased.")
            continue
        click.echo(
            f"Erased {receipt.external_id} ({receipt.program}) at {receipt.erased_at.isoformat()}; "
            f"now {receipt.tombstone}."
        )
        for what, count in receipt.removed.items():
            click.echo(f"  {what}: {count:,}")
        click.echo("  kept: " + "; ".join(receipt.kept))


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
    from engine.participants.queries import LIST_COLUMNS, list_participants

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
        render_table("Participants", LIST_COLUMNS, [[r[c] for c in LIST_COLUMNS] for r in rows])


@cli.group("events")
def events_group() -> None:
    """Activity events (logins, redemptions, renewals, payments...)."""


@events_group.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@_program_option
@_format_option
@_rejects_option
@_encoding_option
@json_option
@pass_state
def events_import(
    state: CliState,
    file: Path,
    program: str | None,
    fmt: str | None,
    rejects: Path | None,
    encoding: str | None,
    as_json: bool,
) -> None:
    """Import activity events from a CSV or JSONL FILE (idempotent on the reference).
    Exits 1 when every row was rejected."""
    _run_import(state, "events", file, program, fmt, rejects, as_json, encoding=encoding)


@events_group.command("rejected")
@click.option(
    "--source",
    type=click.Choice(["sendgrid", "twilio", "events"]),
    help="Only the events of this webhook.",
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@json_option
@pass_state
def events_rejected(state: CliState, source: str | None, limit: int, as_json: bool) -> None:
    """Webhook events that could not be stored, newest first, with the reason (the rest of
    their batch was applied)."""
    from engine.webhooks.rejected import list_rejected

    with transaction(state) as session:
        rows = list_rejected(session, source=source, limit=limit)
    if as_json:
        emit_json(rows)
    else:
        render_table(
            "Rejected webhook events",
            ["received_at", "source", "reason", "payload"],
            [[r["received_at"], r["source"], r["reason"], r["payload"][:120]] for r in rows],
        )


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
    from engine.consent.suppressions import add_suppression

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
    from engine.consent.suppressions import remove_suppression

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
    from engine.consent.suppressions import list_suppressions

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
    """Check campaign files (default: every campaigns/*.yaml and reports/*.yaml) without a
    database: schema, templates, audience SQL; report subscriptions' schema. Prints "ok" or
    each error as file:line field: message; exits 1 on any error. When the database exists,
    SMS sizes follow its programs' opt-out notice setting (else the default: on)."""
    from engine.definitions.validation import ValidationReport, validate_campaigns
    from engine.programs import stored_sms_opt_out_notices
    from engine.subscriptions.validation import split_files, validate_subscriptions

    settings = state.settings
    campaign_files, report_files = split_files(list(files), settings.reports_dir)
    if files and not campaign_files:  # only subscription files named
        report = ValidationReport([], audience_checked=True)
    else:
        report = validate_campaigns(
            campaign_files,
            campaigns_dir=settings.campaigns_dir,
            templates_dir=settings.templates_dir,
            at=state.clock.now(),
            sms_opt_out_notices=stored_sms_opt_out_notices(settings.database_url),
            sender=(settings.email_from, settings.postal_address),
        )
    report.files.extend(
        validate_subscriptions(report_files if files else None, reports_dir=settings.reports_dir)
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
        report = plan(
            session, loaded, at=when, global_cap=_global_cap(state), settings=state.settings
        )
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
        f"Eligible: {report.eligible:,} (treatment {report.treatment:,}, holdout {report.holdout:,}"
        f" = {report.holdout_percent}%)"
    )
    render_table(
        "Projected volume per step (treatment reachable on the step's channel)",
        ["step", "channel", "projected", "deadline", "already expired"],
        [(v.step_id, v.channel, v.projected, v.deadline, v.expired) for v in report.steps],
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
    if report.sms:
        render_table(
            f"SMS size for {report.sms[0].external_id} (sample member)",
            ["step", "encoding", "characters", "segments", "warning"],
            [
                (
                    z.step,
                    z.encoding or "-",
                    _show_value(z.characters),
                    _show_value(z.segments),
                    _show_value(z.warning),
                )
                for z in report.sms
            ],
        )
        for z in report.sms:
            if z.warning is not None:
                click.echo(f"warning: step {z.step}: {z.warning}")
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
    from engine.sender_identity import require_sender_identity

    loaded = _campaign(state, name)
    require_sender_identity(loaded.definition, state.settings)
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
    from engine.skipped_fires import count_skipped

    with transaction(state) as session:
        rows = list_runs(session, campaign=campaign, limit=limit)
        skipped = count_skipped(session, campaign=campaign)
    if as_json:
        emit_json(rows)
        return
    render_table(
        "Campaign runs",
        [
            "run",
            "campaign",
            "program",
            "fire",
            "status",
            "launched",
            "enrolled",
            "holdout",
            "work left",
        ],
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
                r.work.describe() if r.work.any else "-",
            )
            for r in rows
        ],
    )
    if skipped:
        click.echo(f"{skipped:,} fire time(s) not launched: see `campaign runs skipped`.")


@runs_group.command("skipped")
@click.option("--campaign", help="Only fire times of this campaign.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@json_option
@pass_state
def runs_skipped(state: CliState, campaign: str | None, limit: int, as_json: bool) -> None:
    """List the cron fire times the scheduler did not launch, and why (later than the misfire
    grace, or before the schedule was first seen), newest first."""
    from engine.skipped_fires import list_skipped

    with transaction(state) as session:
        rows = list_skipped(session, campaign=campaign, limit=limit)
    if as_json:
        emit_json(rows)
        return
    render_table(
        "Skipped fire times",
        ["campaign", "fire", "skipped at", "why"],
        [
            (
                r.campaign,
                r.fire_at.isoformat(timespec="minutes"),
                r.skipped_at.isoformat(timespec="minutes"),
                r.reason,
            )
            for r in rows
        ],
    )


@runs_group.command("show")
@click.argument("run", type=int)
@json_option
@pass_state
def runs_show(state: CliState, run: int, as_json: bool) -> None:
    """Show run RUN: status, the work it still has, definition hash, enrollments by group and
    state."""
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
    click.echo(f"  work left: {detail.work.describe()}")
    click.echo(f"  launched: {detail.launched_at.isoformat()}")
    click.echo(f"  definition sha256: {detail.definition_hash}")
    click.echo(f"  enrolled: {detail.enrolled:,} (holdout {detail.holdout:,})")
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
    if change.skipped_messages:
        text += f"; {change.skipped_messages} queued messages skipped"
    if change.closed_tasks:
        text += f"; {change.closed_tasks} open call tasks closed"
    if change.tasks_with_agents:
        text += f"; {change.tasks_with_agents} call tasks held by agents close when logged"
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
            session,
            loaded,
            step,
            external_id,
            settings=state.settings,
            variant=variant,
            at=state.clock.now(),
            global_cap=_global_cap(state),
        )
    if as_json:
        emit_json(result)
        return
    if result.not_enrolled:
        # Said first: what follows is what they WOULD receive, were they enrolled.
        click.echo(f"NOT ENROLLED NOW: {result.not_enrolled}; rendered all the same:")
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


# ------------------------------------------------ reports


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


@cli.group("report")
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


# ------------------------------------------------ dispatch


def _dispatch_progress(as_json: bool) -> Any:
    """A rich counter on a terminal (stderr), else nothing."""
    from rich.console import Console
    from rich.progress import (
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    if as_json or not sys.stderr.isatty():
        return None
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        MofNCompleteColumn(),  # "handled/total", "?" until the first count
        TextColumn("messages"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


class DispatchTotal:
    """The progress bar's total: messages handled so far plus those due now. One COUNT over
    the (status, not_before) index at start, then at most one per ``every`` seconds, by
    whichever sending thread reports progress when it is time."""

    def __init__(self, app: App, bar: Any, task: Any, *, every: float = 2.0) -> None:
        import threading

        self.app, self.bar, self.task, self.every = app, bar, task, every
        self.handled = 0
        self.counted_at = time.monotonic()
        self.lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        from engine.outbox import count_due

        with self.app.sessions() as session:
            due = count_due(session, at=self.app.clock.now())
        with self.lock:
            self.bar.update(self.task, total=self.handled + due)

    def __call__(self, n: int) -> None:
        self.bar.advance(self.task, n)
        with self.lock:
            self.handled += n
            now = time.monotonic()
            count_now = now - self.counted_at >= self.every
            if count_now:
                self.counted_at = now  # this thread counts; the others carry on sending
        if count_now:
            self.refresh()


@cli.command("dispatch")
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=64),
    default=1,
    show_default=True,
    help="Sending threads, each with its own claims (PostgreSQL shares the queue with any "
    "other dispatcher too).",
)
@click.option(
    "--max", "max_messages", type=click.IntRange(min=1), help="Stop after this many messages."
)
@click.option(
    "--drain", is_flag=True, help="Send what is due now and exit instead of waiting for more."
)
@json_option
@pass_state
def dispatch_command(
    state: CliState, workers: int, max_messages: int | None, drain: bool, as_json: bool
) -> None:
    """Send due email and SMS from the outbox through SendGrid / Twilio (or the file sink),
    re-checking consent, suppressions, send windows and frequency caps right before each
    message. Runs until SIGTERM / Ctrl-C (then finishes the message in flight and puts the
    rest of its claims back), or with --drain until nothing is due."""
    import os
    import signal
    import socket
    import threading

    from engine.channels import build_channels
    from engine.dispatch import dispatch

    app = state.app()
    channels = build_channels(state.settings, clock=state.clock)
    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    bar = _dispatch_progress(as_json)
    task = bar.add_task("dispatching", total=None) if bar is not None else None
    total = DispatchTotal(app, bar, task) if bar is not None else None
    try:
        if bar is not None:
            bar.start()
        summary = dispatch(
            app,
            channels,
            worker=f"{socket.gethostname()}:{os.getpid()}"[:56],
            workers=workers,
            max_messages=max_messages,
            stop=stop,
            follow=not drain,
            progress=total,
        )
    finally:
        if bar is not None:
            bar.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for channel in channels.values():
            channel.close()
    if as_json:
        emit_json(summary)
        if summary.errors:
            raise SystemExit(1)
        return
    skipped = sum(summary.skipped.values())
    click.echo(
        f"sent {summary.sent:,}, skipped {skipped:,}, waiting {summary.waiting:,}, retried "
        f"{summary.retried:,}, failed {summary.failed:,}, unknown {summary.unknown:,} "
        f"({summary.workers} worker(s), {summary.seconds:.1f}s, stopped: {summary.stopped_by})"
    )
    for reason, count in sorted(summary.skipped.items()):
        click.echo(f"  skipped {reason}: {count:,}")
    if summary.expired_leases:
        click.echo(
            f"{summary.expired_leases:,} message(s) of a dispatcher that died while sending are "
            "now unknown: see `campaign outbox unknown`"
        )
    if summary.requeued_leases:
        click.echo(
            f"{summary.requeued_leases:,} message(s) a dead dispatcher had claimed but not begun "
            "to send were queued again"
        )
    for run_id in summary.paused_runs:
        click.echo(f"run {run_id} was paused: see `campaign runs show {run_id}`")
    for circuit in summary.waiting_for:
        click.echo(circuit.describe())
    for error in summary.errors:
        click.echo(f"error: {error}", err=True)
    if summary.errors:
        raise SystemExit(1)


@cli.group("outbox")
def outbox_group() -> None:
    """Messages waiting, sent, skipped, failed or of unknown fate."""


_OUTBOX_COLUMNS = (
    "id",
    "run",
    "step",
    "channel",
    "to",
    "member",
    "status",
    "reason",
    "tries",
    "expires",
)


def _outbox_rows(messages: Sequence[Any]) -> list[list[Any]]:
    return [
        [
            m.id,
            m.run_id,
            m.step + (f"/{m.variant}" if m.variant else ""),
            m.channel,
            m.to,
            m.external_id,
            m.status,
            m.status_reason or m.last_error,
            m.attempts,
            m.expires_at.isoformat(timespec="minutes") if m.expires_at else "",
        ]
        for m in messages
    ]


@outbox_group.command("list")
@click.option(
    "--status",
    type=click.Choice(
        ["queued", "sending", "sent", "delivered", "bounced", "failed", "skipped", "unknown"]
    ),
    help="Only messages in this status.",
)
@click.option("--run", "run_id", type=int, help="Only messages of this run.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@json_option
@pass_state
def outbox_list(
    state: CliState, status: str | None, run_id: int | None, limit: int, as_json: bool
) -> None:
    """Outbox messages, most recently changed first."""
    from engine.outbox import list_messages

    with transaction(state) as session:
        messages = list_messages(session, status=status, run_id=run_id, limit=limit)
    if as_json:
        emit_json(messages)
        return
    render_table(None, _OUTBOX_COLUMNS, _outbox_rows(messages))


@outbox_group.command("unknown")
@click.option("--run", "run_id", type=int, help="Only messages of this run.")
@click.option(
    "--since",
    metavar="TIME",
    help="Only those left unknown since this ISO 8601 time (UTC if no offset) or this long ago.",
)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option(
    "--after", type=int, metavar="ID", help="The next page: messages after this id (in id order)."
)
@json_option
@pass_state
def outbox_unknown(
    state: CliState,
    run_id: int | None,
    since: str | None,
    limit: int,
    after: int | None,
    as_json: bool,
) -> None:
    """Messages that may or may not have gone (a crash or a timeout after the request was
    sent), in id order, a page at a time. Check with the provider, then settle them with
    `campaign outbox resolve` (one, or in bulk with --all/--run/--since)."""
    from engine.consent.suppression_sync import parse_since
    from engine.outbox import count_unknown, unknown_messages

    when = parse_since(since, now=state.clock.now()) if since else None
    with transaction(state) as session:
        messages = unknown_messages(session, limit=limit, after=after, run_id=run_id, since=when)
        total = count_unknown(session, run_id=run_id, since=when)
    if as_json:
        emit_json(messages)
        return
    if not messages:
        click.echo("no message of unknown fate" + (" after that id" if after else ""))
        return
    more = len(messages) == limit
    render_table(
        f"{total:,} message(s) of unknown fate"
        + (f"; next page: --after {messages[-1].id}" if more else ""),
        (*_OUTBOX_COLUMNS, "claimed by", "provider id"),
        [
            [*row, m.claimed_by, m.provider_message_id]
            for row, m in zip(_outbox_rows(messages), messages, strict=True)
        ],
    )


@outbox_group.command("resolve")
@click.argument("message", required=False)
@click.option("--sent", "action", flag_value="sent", help="It did go: never send it again.")
@click.option("--resend", "action", flag_value="resend", help="It did not go: queue it again.")
@click.option("--failed", "action", flag_value="failed", help="Give up on it.")
@click.option("--all", "every", is_flag=True, help="Every message of unknown fate.")
@click.option("--run", "run_id", type=int, help="Every unknown message of this run.")
@click.option(
    "--since",
    metavar="TIME",
    help="Every message left unknown since this ISO 8601 time or this long ago (36h).",
)
@click.option("--note", help="Why (kept with the message).")
@json_option
@pass_state
def outbox_resolve(
    state: CliState,
    message: str | None,
    action: str | None,
    every: bool,
    run_id: int | None,
    since: str | None,
    note: str | None,
    as_json: bool,
) -> None:
    """Settle outbox MESSAGE (its id or uid) by hand: --sent, --resend or --failed; or every
    unknown message at once with --all, --run R and/or --since TIME."""
    from engine.consent.suppression_sync import parse_since
    from engine.outbox import resolve, resolve_many

    if action is None:
        raise click.UsageError("say how: --sent, --resend or --failed")
    bulk = every or run_id is not None or since is not None
    if message is not None and bulk:
        raise click.UsageError("give MESSAGE, or --all/--run/--since, not both")
    if message is None and not bulk:
        raise click.UsageError("which? give MESSAGE, or --all/--run/--since for many")
    now = state.clock.now()
    if message is None:
        when = parse_since(since, now=now) if since else None
        with transaction(state) as session:
            many = resolve_many(
                session,
                action,  # type: ignore[arg-type]
                at=now,
                run_id=run_id,
                since=when,
                note=note,
            )
        if as_json:
            emit_json(many)
            return
        click.echo(f"{many.count:,} message(s) of unknown fate -> {many.after}")
        return
    with transaction(state) as session:
        result = resolve(session, message, action, at=now, note=note)  # type: ignore[arg-type]
    if as_json:
        emit_json(result)
        return
    click.echo(f"outbox message {result.id}: {result.before} -> {result.after}")


@outbox_group.command("reconcile")
@click.option("--run", "run_id", type=int, help="Only messages of this run.")
@click.option(
    "--since",
    metavar="TIME",
    help="Only those left unknown since this ISO 8601 time (UTC if no offset) or this long ago.",
)
@click.option("--dry-run", is_flag=True, help="Read the providers' logs and count; write nothing.")
@json_option
@pass_state
def outbox_reconcile(
    state: CliState, run_id: int | None, since: str | None, dry_run: bool, as_json: bool
) -> None:
    """Settle messages of unknown fate from the providers' own logs: each one SendGrid's
    Email Activity (by our message id) or Twilio's Messages list (same number and text, since
    it was claimed) shows it took becomes sent. The rest stay unknown, counted by why; nothing
    is resent."""
    from engine.channels import build_channels
    from engine.consent.suppression_sync import parse_since
    from engine.reconcile import reconcile

    when = parse_since(since, now=state.clock.now()) if since else None
    app = state.app()
    channels = build_channels(state.settings, clock=state.clock)
    try:
        summary = reconcile(app, channels, run_id=run_id, since=when, dry_run=dry_run)
    finally:
        for channel in channels.values():
            channel.close()
    if as_json:
        emit_json(summary)
        return
    verb = "would be settled" if dry_run else "settled"
    click.echo(
        f"{summary.checked} message(s) of unknown fate checked; {summary.settled} {verb} as "
        "sent (the provider has them)"
    )
    why = {
        "not_found": "not in the provider's log (it may not have gone, or the log lags by "
        "minutes: run this again later, then `outbox resolve --resend` what is left)",
        "ambiguous": "several messages of the same number and text in Twilio's log: settle "
        "by hand (`outbox resolve`)",
        "no_provider": "their channel has no provider credentials: nothing to ask",
        "log_unreadable": "the provider's log could not be read (see below)",
        "settled_meanwhile": "settled meanwhile by someone else, or the provider's id is "
        "another message's",
    }
    for reason, count in summary.left.items():
        click.echo(f"  {count} left unknown: {why.get(reason, reason)}")
    for problem in summary.problems:
        click.echo(f"  {problem}")


@outbox_group.command("requeue")
@click.option(
    "--status",
    type=click.Choice(["failed"]),
    default="failed",
    show_default=True,
    help="Messages in this status (only failed ones that never went are queued again).",
)
@click.option("--reason", help="Only those failed for this reason (e.g. too_many_attempts).")
@click.option("--run", "run_id", type=int, help="Only messages of this run.")
@click.option(
    "--since",
    metavar="TIME",
    help="Only those failed since this ISO 8601 time (UTC if no offset) or this long ago (36h).",
)
@click.option("--note", help="Why (kept with each message).")
@json_option
@pass_state
def outbox_requeue(
    state: CliState,
    status: str,
    reason: str | None,
    run_id: int | None,
    since: str | None,
    note: str | None,
    as_json: bool,
) -> None:
    """Queue failed messages again in bulk (those that never went: e.g. failed
    too_many_attempts by a provider outage). They start again from no attempt and are gated
    again as usual: consent, suppressions, send windows, caps."""
    from engine.consent.suppression_sync import parse_since
    from engine.outbox import requeue

    now = state.clock.now()
    when = parse_since(since, now=now) if since else None
    with transaction(state) as session:
        result = requeue(
            session, at=now, status=status, reason=reason, run_id=run_id, since=when, note=note
        )
    if as_json:
        emit_json(result)
        return
    click.echo(f"{result.count:,} {status} message(s) queued again")


@cli.command("send-test")
@click.argument("campaign")
@click.argument("step")
@click.option("--to", "to", required=True, help="Email address or phone number to send to.")
@click.option(
    "--participant",
    "external_id",
    help="Render for this member (their locale and variant) [default: a sample member].",
)
@click.option(
    "--max-wait",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Seconds to wait at most for a slot of the sender's rate limit.",
)
@json_option
@pass_state
def send_test_command(
    state: CliState,
    campaign: str,
    step: str,
    to: str,
    external_id: str | None,
    max_wait: float,
    as_json: bool,
) -> None:
    """Send ONE real test message of STEP of CAMPAIGN to --to through the configured channel,
    rendered as `campaign preview` shows it, subject prefixed "[TEST]". It belongs to no run
    and is never counted in reports. It takes a slot of the sender's rate limit, shared with
    running dispatchers, and fails rather than wait longer than --max-wait."""
    from engine.channels import build_channels
    from engine.definitions.loader import load_campaign
    from engine.send_test import send_test

    loaded = load_campaign(state.settings.campaigns_dir, campaign)
    channels = build_channels(state.settings, clock=state.clock)
    try:
        with transaction(state) as session:
            result = send_test(
                session,
                loaded,
                step,
                to,
                settings=state.settings,
                channels=channels,
                participant=external_id,
                max_wait=max_wait,
            )
    finally:
        for channel in channels.values():
            channel.close()
    if as_json:
        emit_json(result)
        return
    what = f"subject {result.subject!r}" if result.subject else f"{result.channel}"
    click.echo(
        f"sent {result.campaign} / {result.step} ({what}) to {result.to} via {result.provider}"
        + (f", provider id {result.provider_message_id}" if result.provider_message_id else "")
        + (f", after {result.waited:.1f} s for the sender's rate limit" if result.waited else "")
    )


# ------------------------------------------------ calls: agents, call lists, caller log


def _duration_option(value: str | None) -> Any:
    from engine.definitions.durations import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.group("agents")
def agents_group() -> None:
    """Agents who work call lists."""


@agents_group.command("add")
@click.argument("login")
@click.option("--name", required=True, help="Full name.")
@click.option(
    "--role",
    type=click.Choice(["agent", "coordinator", "manager"]),
    default="agent",
    show_default=True,
    help="What they do.",
)
@click.option("--timezone", default="America/New_York", show_default=True, help="IANA zone.")
@click.option(
    "--daily-target",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Outbound calls per working day (the calling plan).",
)
@click.option(
    "--weekly-target",
    type=click.IntRange(min=0),
    help="Outbound calls per week [default: daily target × the week's business days].",
)
@click.option(
    "--monthly-target",
    type=click.IntRange(min=0),
    help="Outbound calls per month [default: daily target × the month's business days].",
)
@click.option("--team", "teams", multiple=True, help="A team whose queue they work (repeat).")
@click.option(
    "--language",
    "languages",
    multiple=True,
    help="A language they speak, e.g. zh (repeat): members who speak it are served to them first.",
)
@json_option
@pass_state
def agents_add(
    state: CliState,
    login: str,
    name: str,
    role: str,
    timezone: str,
    daily_target: int,
    weekly_target: int | None,
    monthly_target: int | None,
    teams: tuple[str, ...],
    languages: tuple[str, ...],
    as_json: bool,
) -> None:
    """Add agent LOGIN (name, role, timezone, calling-plan targets, teams, languages)."""
    from engine.calls.agents import add_agent

    with transaction(state) as session:
        agent = add_agent(
            session,
            login,
            name=name,
            role=role,
            timezone=timezone,
            daily_target=daily_target,
            weekly_target=weekly_target,
            monthly_target=monthly_target,
            teams=teams,
            languages=languages,
            at=state.app().clock.now(),
        )
    if as_json:
        emit_json(agent)
        return
    click.echo(
        f"Agent {agent.login} ({agent.name}, {agent.role}) added; teams: "
        f"{', '.join(agent.teams) or 'none'}; languages: {', '.join(agent.languages) or 'any'}; "
        f"{_targets_text(agent)}."
    )


def _targets_text(agent: Any) -> str:
    """'daily target 40, weekly 150, monthly derived' for an AgentView."""

    def shown(target: int | None) -> str:
        return "derived" if target is None else str(target)

    return (
        f"daily target {agent.daily_target}, weekly {shown(agent.weekly_target)}, "
        f"monthly {shown(agent.monthly_target)}"
    )


class _TargetType(click.ParamType):
    """A target for `agents set`: a count of calls (0 or more), or `derived`."""

    name = "N|derived"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from engine.calls.agents import DERIVED

        if isinstance(value, int) or value == DERIVED:
            return value
        try:
            number = int(value)
        except ValueError:
            self.fail(f"{value!r} is not a number of calls or 'derived'", param, ctx)
        if number < 0:
            self.fail(f"{number} must be 0 or more", param, ctx)
        return number


@agents_group.command("set")
@click.argument("login")
@click.option(
    "--daily-target",
    type=click.IntRange(min=0),
    help="Outbound calls per working day.",
)
@click.option(
    "--weekly-target",
    type=_TargetType(),
    help="Outbound calls per week, or 'derived' (daily target × the week's business days).",
)
@click.option(
    "--monthly-target",
    type=_TargetType(),
    help="Outbound calls per month, or 'derived' (daily target × the month's business days).",
)
@click.option(
    "--team",
    "teams",
    multiple=True,
    help="Their teams from now on (repeat; replaces the teams they had).",
)
@click.option(
    "--language",
    "languages",
    multiple=True,
    help="The languages they speak from now on (repeat; replaces those they had; 'none': "
    "no language routing for them).",
)
@json_option
@pass_state
def agents_set(
    state: CliState,
    login: str,
    daily_target: int | None,
    weekly_target: int | Literal["derived"] | None,
    monthly_target: int | Literal["derived"] | None,
    teams: tuple[str, ...],
    languages: tuple[str, ...],
    as_json: bool,
) -> None:
    """Change agent LOGIN's calling-plan targets, teams or languages; what is not given stays
    as it is."""
    from engine.calls.agents import set_targets

    given = (daily_target, weekly_target, monthly_target)
    if all(value is None for value in given) and not teams and not languages:
        raise click.UsageError(
            "give --daily-target, --weekly-target, --monthly-target, --team or --language"
        )
    with transaction(state) as session:
        agent = set_targets(
            session,
            login,
            daily_target=daily_target,
            weekly_target=weekly_target,
            monthly_target=monthly_target,
            teams=teams or None,
            languages=None if not languages else [x for x in languages if x != "none"],
        )
    if as_json:
        emit_json(agent)
        return
    click.echo(
        f"Agent {agent.login}: teams {', '.join(agent.teams) or 'none'}; languages "
        f"{', '.join(agent.languages) or 'any'}; {_targets_text(agent)}."
    )


@agents_group.command("disable")
@click.argument("login")
@json_option
@pass_state
def agents_disable(state: CliState, login: str, as_json: bool) -> None:
    """Disable agent LOGIN (they left): they claim nothing, their live claims go back to the
    queue and their agent-only callbacks go to their team's queue."""
    from engine.calls.agents import disable_agent

    with transaction(state) as session:
        change = disable_agent(session, login, at=state.app().clock.now())
    if as_json:
        emit_json(change)
        return
    if not change.changed:
        click.echo(f"Agent {change.agent.login} was disabled already.")
    click.echo(
        f"Agent {change.agent.login} disabled; {change.claims_released:,} claim(s) back in the "
        f"queue; {change.callbacks_to_team:,} agent-only callback(s) now served to the team "
        "when due."
    )


@agents_group.command("enable")
@click.argument("login")
@json_option
@pass_state
def agents_enable(state: CliState, login: str, as_json: bool) -> None:
    """Enable agent LOGIN again."""
    from engine.calls.agents import enable_agent

    with transaction(state) as session:
        change = enable_agent(session, login)
    if as_json:
        emit_json(change)
        return
    click.echo(
        f"Agent {change.agent.login} " + ("enabled." if change.changed else "was enabled already.")
    )


@agents_group.command("list")
@click.option("--team", help="Only agents of this team.")
@json_option
@pass_state
def agents_list(state: CliState, team: str | None, as_json: bool) -> None:
    """List agents with their role, zone, teams and calling-plan targets."""
    from engine.calls.agents import list_agents

    with transaction(state) as session:
        rows = list_agents(session, team=team)
    if as_json:
        emit_json(rows)
        return
    render_table(
        "Agents",
        [
            "login",
            "name",
            "role",
            "timezone",
            "teams",
            "languages",
            "daily target",
            "weekly target",
            "monthly target",
            "state",
        ],
        [
            (
                a.login,
                a.name,
                a.role,
                a.timezone,
                ", ".join(a.teams),
                ", ".join(a.languages),
                a.daily_target,
                "derived" if a.weekly_target is None else a.weekly_target,
                "derived" if a.monthly_target is None else a.monthly_target,
                "active" if a.active else "disabled",
            )
            for a in rows
        ],
    )


@agents_group.command("show")
@click.argument("login")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Plan day [today].")
@json_option
@pass_state
def agents_show(state: CliState, login: str, day: datetime | None, as_json: bool) -> None:
    """Show agent LOGIN and their calling plan: calls today, this week and this month
    against their targets."""
    from zoneinfo import ZoneInfo

    from engine.calls.agents import get_agent, view
    from engine.calls.reporting import calling_plan

    with transaction(state) as session:
        agent = view(get_agent(session, login))
        when = (
            day.date()
            if day
            else state.app().clock.now().astimezone(ZoneInfo(agent.timezone)).date()
        )
        plan = calling_plan(session, login, day=when)
    if as_json:
        emit_json({"agent": agent, "calling_plan": plan})
        return
    click.echo(
        f"{agent.login}: {agent.name} ({agent.role}), {agent.timezone}, teams "
        f"{', '.join(agent.teams) or 'none'}, languages {', '.join(agent.languages) or 'any'}, "
        f"{_targets_text(agent)}"
    )
    render_table(
        f"Calling plan around {when.isoformat()}",
        ["period", "from", "to", "calls", "target", "target from", "attainment"],
        [
            (
                f.period,
                f.start,
                f.end,
                f.calls,
                f.target,
                f.target_source,
                "" if f.attainment is None else f"{f.attainment:.0%}",
            )
            for f in plan.figures
        ],
    )


@cli.group("calls")
def calls_group() -> None:
    """Call lists, the agent's next call, documenting calls, the caller log, the dialer."""


def _day_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--date",
        "day",
        type=click.DateTime(["%Y-%m-%d"]),
        help="The list for this local day (the agent's zone) [default: due now].",
    )(func)


@calls_group.command("list")
@click.option("--agent", help="The list as this agent would be served it.")
@_day_option
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@pass_state
def calls_list(
    state: CliState, agent: str | None, day: datetime | None, as_json: bool, as_csv: bool
) -> None:
    """The call list in the order it will be served, with when each task becomes callable and
    why it is on the list."""
    from engine.calls.dialer import export_rows, to_csv
    from engine.calls.rules import CallRules
    from engine.calls.tasks import list_calls

    with transaction(state) as session:
        if as_csv:
            rows = export_rows(
                session,
                at=state.app().clock.now(),
                agent=agent,
                day=day.date() if day else None,
                rules=CallRules.from_settings(state.settings),
            )
            click.echo(to_csv(rows), nl=False)
            return
        tasks = list_calls(
            session,
            at=state.app().clock.now(),
            agent=agent,
            day=day.date() if day else None,
            rules=CallRules.from_settings(state.settings),
        )
    if as_json:
        emit_json(tasks)
        return
    render_table(
        "Call list" + (f" for {agent}" if agent else ""),
        ["#", "task", "member", "name", "callable", "attempt", "why"],
        [
            (
                t.position,
                t.task_id,
                t.external_id,
                t.name,
                "now"
                if t.callable_now
                else (t.callable_at.isoformat(timespec="minutes") if t.callable_at else "never"),
                f"{t.attempts + 1}/{t.max_attempts}",
                t.why,
            )
            for t in tasks
        ],
    )


@calls_group.command("at-risk")
@click.option("--agent", help="Only this agent's callbacks.")
@json_option
@pass_state
def calls_at_risk(state: CliState, agent: str | None, as_json: bool) -> None:
    """Agent-only callbacks past their time that nobody took: whose agent, and when they fall
    (or fell) back to the team."""
    from engine.calls.rules import CallRules, callbacks_at_risk

    with transaction(state) as session:
        rows = callbacks_at_risk(
            session,
            at=state.app().clock.now(),
            rules=CallRules.from_settings(state.settings),
            agent=agent,
        )
    if as_json:
        emit_json(rows)
        return
    render_table(
        "Callbacks at risk",
        ["task", "member", "agent", "agent state", "team", "due", "fallback"],
        [
            (
                r.task_id,
                r.external_id,
                r.agent,
                r.agent_state,
                r.team or "",
                r.due_at.isoformat(timespec="minutes"),
                "served to the team"
                if r.fallen_back
                else f"to the team at {r.falls_back_at.isoformat(timespec='minutes')}",
            )
            for r in rows
        ],
    )


def _show_sheet(sheet: Any, claim: Any) -> None:
    click.echo(
        f"Task {sheet.task_id} ({sheet.kind}, {sheet.campaign or '-'} / "
        f"{sheet.step or '-'}), attempt {sheet.attempt}/{sheet.max_attempts}; "
        f"yours until {claim.claimed_until.isoformat(timespec='minutes')}"
        + (" (you already held it)" if claim.resumed else "")
    )
    click.echo(
        f"CALL {sheet.name} ({sheet.external_id}) on {sheet.phone}; local time "
        f"{sheet.local_time or 'unknown'}; language {sheet.locale or 'default'}"
    )
    click.echo("\nVerify before discussing the account (ask; never read the answer out):")
    for q in sheet.verification:
        click.echo(f"  - {q.ask}  [on file: {q.expected}]")
    click.echo("\n--- script ---")
    click.echo(sheet.script or "(no script)")
    click.echo("--- account review ---")
    for key, value in sheet.account.items():
        click.echo(f"  {key.replace('_', ' ')}: {_show_value(value)}")
    click.echo(
        "  consents: "
        + (", ".join(f"{k} {v}" for k, v in sheet.consents.items()) or "none recorded")
    )
    if sheet.suppressions:
        click.echo("  suppressions: " + "; ".join(sheet.suppressions))
    if sheet.redemptions:
        click.echo(
            "  recent redemptions: "
            + "; ".join(f"{r['at']:%Y-%m-%d} {r['points'] or ''} pts" for r in sheet.redemptions)
        )
    render_table(
        "Recent activity",
        ["when", "type", "points", "amount"],
        [
            (a["at"].isoformat(timespec="minutes"), a["type"], a["points"], a["amount"])
            for a in sheet.activity
        ],
    )
    render_table(
        "Earlier contacts",
        ["when", "channel", "what", "outcome", "by", "notes"],
        [
            (c.at.isoformat(timespec="minutes"), c.channel, c.what, c.outcome, c.by, c.notes)
            for c in sheet.contacts
        ],
    )
    if sheet.talking_points:
        click.echo("Talking points:")
        for point in sheet.talking_points:
            click.echo(f"  - {point}")
    if sheet.offer:
        click.echo(f"Offer: {sheet.offer}")
    if sheet.cross_sell:
        click.echo(f"Cross-sell: {sheet.cross_sell}")
    if sheet.case is not None:
        from cli_cases import show_case_panel

        show_case_panel(sheet.case)
    click.echo(f"\nDocument it: campaign calls log {sheet.task_id} --disposition CODE ...")


@calls_group.command("next")
@click.option("--agent", required=True, help="Your login.")
@click.option(
    "--lease",
    default="30m",
    show_default=True,
    help="How long the task stays yours (e.g. 30m, 1h).",
)
@json_option
@pass_state
def calls_next(state: CliState, agent: str, lease: str, as_json: bool) -> None:
    """Claim the single best callable task now and show its call script, verification
    questions, account review, earlier contacts, talking points and offer."""
    from engine.calls.scripts import serve_next_in

    served = serve_next_in(state.app(), agent, lease=_duration_option(lease))
    if as_json:
        emit_json(served)
        return
    if served is None:
        click.echo(
            f"Nothing callable for {agent} right now (see `campaign calls list --agent {agent}`)."
        )
        return
    for task_id, reason in served.claim.closed_on_the_way:
        click.echo(f"(task {task_id} closed: not callable, {reason})")
    _show_sheet(served.sheet, served.claim)


def _parse_fields(pairs: Sequence[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r}: use NAME=VALUE", param_hint="--field")
        fields[key.strip()] = value
    return fields


def _stdin_is_terminal() -> bool:
    """Whether a person is typing (prompt them) rather than a script piping (never prompt)."""
    return sys.stdin.isatty()


def _prompt_entry(
    disposition: Any, fields: dict[str, str], verified: bool | None, notes: str | None
) -> tuple[dict[str, str], bool | None, str | None]:
    for spec in disposition.fields:
        if spec.name in fields:
            continue
        # A choice is checked as it is typed, and a required field is asked again until it
        # has a value; the template still validates the whole entry afterwards.
        required = spec.required and spec.default is None
        choices = [*spec.choices, *([] if required else [""])]
        value = click.prompt(
            f"{spec.name}" + (f" ({spec.help})" if spec.help else ""),
            type=click.Choice(choices, case_sensitive=False) if spec.choices else str,
            default=None if required else (spec.default or ""),
            show_default=bool(spec.default),
            show_choices=bool(spec.choices),
        )
        if value:
            fields[spec.name] = value
    if verified is None and disposition.human_contact and disposition.asks_verified:
        verified = click.confirm("Identity verified?", default=False)
    if notes is None:
        notes = click.prompt("Notes", default="", show_default=False) or None
    return fields, verified, notes


@calls_group.command("log")
@click.argument("task", type=int)
@click.option("--agent", help="Your login [default: the agent holding the claim].")
@click.option("--disposition", help="What happened: a disposition code (see `calls dispositions`).")
@click.option("--field", "field_pairs", multiple=True, help="NAME=VALUE of the template (repeat).")
@click.option("--verified", type=click.Choice(["yes", "no"]), help="Was the identity verified?")
@click.option("--notes", help="Free-text notes for the next person.")
@click.option("--no-input", is_flag=True, help="Never prompt, even on a terminal.")
@json_option
@pass_state
def calls_log(
    state: CliState,
    task: int,
    agent: str | None,
    disposition: str | None,
    field_pairs: tuple[str, ...],
    verified: str | None,
    notes: str | None,
    no_input: bool,
    as_json: bool,
) -> None:
    """Document call TASK on its disposition's template: required fields, allowed values,
    verified flag; prompts for what is missing on a terminal."""
    from engine.calls.log import CallInput, dispositions_for, log_call

    fields = _parse_fields(field_pairs)
    flag = None if verified is None else verified == "yes"
    with transaction(state) as session:
        dispositions = dispositions_for(session, state.settings.dispositions_file, task)
    interactive = _stdin_is_terminal() and not no_input and not as_json
    if disposition is None:
        if not interactive:
            raise click.UsageError("--disposition is required (see `campaign calls dispositions`)")
        codes = [d.code for d in dispositions]
        disposition = click.prompt("Disposition", type=click.Choice(codes, case_sensitive=False))
    if interactive:
        fields, flag, notes = _prompt_entry(dispositions.get(disposition), fields, flag, notes)
    with transaction(state) as session:
        result = log_call(
            session,
            CallInput(task, agent or "", disposition, fields, flag, notes),
            dispositions,
            at=state.app().clock.now(),
        )
    if as_json:
        emit_json(result)
        return
    click.echo(f"Logged (caller log #{result.seq}): {result.record}")
    after = f"task {result.task_id} is {result.task_status}"
    if result.task_status == "open" and result.next_due_at is not None:
        after += f", next attempt from {result.next_due_at.isoformat(timespec='minutes')}"
    if result.created_task_id:
        after += f"; new task {result.created_task_id} due {result.next_due_at}"
    if result.conversions:
        after += f"; {result.conversions} conversion recorded"
    click.echo(after + ".")
    if result.standard_note:
        click.echo(f"Note: {result.standard_note}.")


@calls_group.command("dispositions")
@click.option("--program", help="Include this program's own dispositions.")
@json_option
@pass_state
def calls_dispositions(state: CliState, program: str | None, as_json: bool) -> None:
    """The disposition set: codes, contact or not, final or not, recycle delay, effect and
    the fields each documentation template requires."""
    from engine.calls.config import load_dispositions

    dispositions = list(load_dispositions(state.settings.dispositions_file, program))
    if as_json:
        emit_json([d.describe() for d in dispositions])
        return
    render_table(
        "Dispositions",
        ["code", "contact", "final", "recycle", "effect", "fields"],
        [
            (
                d.code,
                "yes" if d.human_contact else "no",
                "yes" if d.final else "no",
                d.describe()["recycle_after"] or "",
                d.effect,
                ", ".join(f.name + ("" if f.required else "?") for f in d.fields),
            )
            for d in dispositions
        ],
    )


@calls_group.command("verify-log")
@click.option(
    "--head",
    "head_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A head saved by `campaign calls log-head`: the log must still contain it.",
)
@json_option
@pass_state
def calls_verify_log(state: CliState, head_file: Path | None, as_json: bool) -> None:
    """Recompute the caller log's MAC chain, check it reaches its newest signed checkpoint
    (and a saved head), and report the first thing broken (exit status 1)."""
    from engine.calls.caller_log import parse_saved_head, verify

    saved = parse_saved_head(head_file.read_text(), str(head_file)) if head_file else None
    with transaction(state) as session:
        result = verify(session, saved_head=saved)
    if as_json:
        emit_json(result)
    elif result.ok:
        extra = [f"{result.checkpoints:,} checkpoints"]
        if result.erased:
            extra.append(f"{result.erased:,} erased")
        if result.unkeyed:
            extra.append(f"{result.unkeyed:,} written before keyed chaining")
        if saved is not None:
            extra.append(f"contains the saved head of {saved['at']} (entry {saved['seq']})")
        click.echo(
            f"Caller log intact: {result.entries:,} entries ({'; '.join(extra)}); "
            f"head {result.head_hash}."
        )
    elif result.first_broken_seq is None:
        click.echo(f"Caller log BROKEN: {result.problem}")
    else:
        click.echo(
            f"Caller log BROKEN at entry {result.first_broken_seq} (row id "
            f"{result.first_broken_id}): {result.problem}"
        )
    if not result.ok:
        sys.exit(1)


@calls_group.command("log-head")
@pass_state
def calls_log_head(state: CliState) -> None:
    """Print the caller log's head, signed, as one JSON line to keep outside the database
    (e.g. a daily cron appending to a file on another machine); `verify-log --head` checks it."""
    from engine.calls.caller_log import signed_head

    with transaction(state) as session:
        head = signed_head(session, at=state.app().clock.now())
    click.echo(json.dumps(head, separators=(",", ":")))


@calls_group.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv"]),
    default="csv",
    show_default=True,
    help="File format for the dialer.",
)
@click.option("--agent", help="Only tasks this agent would be served.")
@_day_option
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of standard output.",
)
@pass_state
def calls_export(
    state: CliState, fmt: str, agent: str | None, day: datetime | None, output: Path | None
) -> None:
    """Export the callable call list for an external dialer (CSV, serving order)."""
    from engine.calls.dialer import export_rows, to_csv

    with transaction(state) as session:
        rows = export_rows(
            session, at=state.app().clock.now(), agent=agent, day=day.date() if day else None
        )
    text = to_csv(rows)
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"{len(rows)} tasks written to {output}", err=True)


@calls_group.command("import-results")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@_rejects_option
@json_option
@pass_state
def calls_import_results(state: CliState, file: Path, rejects: Path | None, as_json: bool) -> None:
    """Load a dialer's outcomes (call_id and/or called_at, task_id, agent, disposition,
    verified, duration_seconds, notes, field.NAME...), each row validated like `calls log`.
    Good rows are logged, bad rows go to a rejects file with every reason; importing the same
    file again logs nothing twice."""
    from engine.calls.dialer import import_results

    app = state.app()
    summary = import_results(
        app,
        file,
        at=app.clock.now(),
        dispositions_file=state.settings.dispositions_file,
        rejects_path=rejects,
    )
    if as_json:
        emit_json(summary)
        return
    click.echo(
        f"{file}: read {summary.read:,}, applied {summary.applied:,}, already on the caller log "
        f"{summary.unchanged:,}, rejected {summary.rejected:,}"
    )
    if summary.by_disposition:
        click.echo(
            "applied by disposition: "
            + ", ".join(f"{code} {n}" for code, n in summary.by_disposition.items())
        )
    if summary.rejects_path is not None:
        click.echo(f"rejected rows and their reasons: {summary.rejects_path}")


# ------------------------------------------------ sequencing: advance, tick, scheduler


@cli.command("advance")
@click.option(
    "--limit", type=click.IntRange(min=1), help="Look at no more than this many due enrollments."
)
@json_option
@pass_state
def advance_command(state: CliState, limit: int | None, as_json: bool) -> None:
    """Advance due enrollments now: make the outbox messages (rendered, queued) and call tasks
    of every step whose time has come, skip steps whose conditions fail, exit members who opted
    out everywhere, complete finished runs. Idempotent; sends nothing (`campaign tick` and
    `campaign dispatch` send)."""
    from engine.sequencing import advance

    summary = advance(state.app(), limit=limit)
    if as_json:
        emit_json(summary)
        return
    click.echo(summary.message)
    for error in summary.errors:
        click.echo(f"error: {error}", err=True)


@cli.command("tick")
@click.option(
    "--budget",
    type=click.FloatRange(min=0, min_open=True),
    help="Stop sending after this many seconds [default: CAMPAIGN_TICK_BUDGET_SECONDS, 50].",
)
@json_option
@pass_state
def tick_command(state: CliState, budget: float | None, as_json: bool) -> None:
    """Do everything due now and exit (for cron, e.g. every minute): launch scheduled
    campaigns whose time has come, match conversions, advance sequences, send due messages
    within the time budget. Safe beside another tick or the scheduler daemon. On SIGTERM or
    Ctrl-C it stops like `dispatch`: requests in flight finish, the rest goes back."""
    import signal
    import threading

    from engine.tick import tick

    # SIGTERM (a cron wrapper's `timeout`) or Ctrl-C: the requests in flight finish and are
    # recorded, the rest of the claimed messages go back to the queue, as `dispatch` does.
    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        summary = tick(state.app(), budget_seconds=budget, stop=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if as_json:
        emit_json(summary)
        return
    click.echo(summary.message)


@cli.command("scheduler")
@pass_state
def scheduler_command(state: CliState) -> None:
    """Run the scheduler daemon until SIGTERM or Ctrl-C: each recurring campaign's cron
    schedule launches its runs, and a tick every CAMPAIGN_TICK_INTERVAL_SECONDS advances
    sequences and sends. Safe beside cron ticks; stops cleanly."""
    from engine.scheduler import run_scheduler

    app = state.app()
    settings = app.settings
    click.echo(
        f"Scheduler running: campaigns in {settings.campaigns_dir}, a tick every "
        f"{settings.tick_interval_seconds:g} s. Stop with Ctrl-C or SIGTERM.",
        err=True,
    )

    def on_tick(summary: Any) -> None:
        advanced = summary.advance
        busy = bool(advanced and (advanced.enrollments or advanced.runs_completed))
        sending = summary.dispatch
        alarm = bool(sending is not None and (sending.errors or sending.paused_runs))
        if summary.launched or busy or summary.sent or summary.definition_errors or alarm:
            click.echo(summary.message)

    def on_launch(item: Any) -> None:  # the launch jobs' own launches (ticks print theirs)
        if item.error:
            click.echo(f"launch {item.campaign}: FAILED: {item.error}")
        elif item.skipped:
            click.echo(item.skipped)
        else:
            click.echo(f"launched {item.campaign}: run {item.run_id}, {item.enrolled:,} enrolled")

    result = run_scheduler(app, on_tick=on_tick, on_launch=on_launch)
    why = f" ({result.stopped_by})" if result.stopped_by else ""
    click.echo(
        f"Scheduler stopped{why}: {result.ticks} tick(s), {len(result.launched)} launch(es), "
        f"{result.sent:,} message(s) sent.",
        err=True,
    )
    for error in result.errors:
        click.echo(f"error: {error}", err=True)


# ------------------------------------------------ webhooks: serve, suppressions sync


@cli.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="CAMPAIGN_SERVE_HOST",
    show_envvar=True,
    help="Interface to listen on (0.0.0.0 in a container behind a proxy).",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8000,
    show_default=True,
    envvar="CAMPAIGN_SERVE_PORT",
    show_envvar=True,
    help="Port to listen on.",
)
@pass_state
def serve_command(state: CliState, host: str, port: int) -> None:
    """Serve the provider webhooks and the unsubscribe pages under uvicorn: SendGrid events
    (POST /webhooks/sendgrid), Twilio status callbacks and inbound SMS (POST
    /webhooks/twilio/status, /webhooks/twilio/inbound), activity events from a program's own
    systems (POST /webhooks/events, Bearer CAMPAIGN_EVENTS_WEBHOOK_TOKEN), unsubscribe links
    (/u/TOKEN) and GET /healthz. Set CAMPAIGN_PUBLIC_URL to the URL the providers call."""
    from engine.webhooks.app import serve

    level = "debug" if log.isEnabledFor(logging.DEBUG) else "info"
    json_logs = any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)
    serve(state.app(), host=host, port=port, log_level=level, own_log_config=not json_logs)


@cli.group("suppressions")
def suppressions_group() -> None:
    """Keep the suppression list in step with the providers' own lists."""


@suppressions_group.command("sync")
@click.option(
    "--since",
    metavar="TIME",
    help="Only entries SendGrid added since this ISO 8601 time (UTC if no offset) or this long "
    "ago (7d, 36h) [default: where the last sync ended; everything on the first run].",
)
@json_option
@pass_state
def suppressions_sync(state: CliState, since: str | None, as_json: bool) -> None:
    """Pull bounces, spam reports and global unsubscribes from SendGrid (SENDGRID_API_KEY) and
    suppress those addresses on email; their queued email is skipped at once."""
    from engine.consent.suppression_sync import sync_suppressions

    summary = sync_suppressions(state.app(), since=since)
    if as_json:
        emit_json({**dataclasses.asdict(summary), "added": summary.added})
        return
    since_text = summary.since.isoformat() if summary.since else "the start"
    render_table(
        f"SendGrid suppressions since {since_text}",
        ["list", "fetched", "added", "already suppressed", "not an address"],
        [[name, c.fetched, c.added, c.already, c.invalid] for name, c in summary.lists.items()],
    )
    click.echo(
        f"{summary.added:,} address(es) suppressed; {summary.skipped_messages:,} queued "
        "message(s) skipped."
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


# ------------------------------------------------ report subscriptions


@cli.group("reports")
def reports_group() -> None:
    """Report subscriptions (reports/*.yaml): reports delivered by email on a schedule by the
    tick and the scheduler; list them, list their deliveries, send one now."""


@reports_group.command("list")
@json_option
@pass_state
def reports_list(state: CliState, as_json: bool) -> None:
    """Every subscription file: its reports, period, language, recipients, schedule, next
    fire, its latest delivery and how many deliveries need attention."""
    from engine.subscriptions.deliveries import list_subscriptions, load_subscriptions

    loaded, errors = load_subscriptions(state.settings.reports_dir)
    with transaction(state) as session:
        rows = list_subscriptions(
            session,
            loaded,
            at=state.app().clock.now(),
            default_zone=state.settings.default_timezone,
        )
    if as_json:
        emit_json({"subscriptions": rows, "file_errors": errors})
        return
    render_table(
        f"Report subscriptions in {state.settings.reports_dir}",
        ["name", "reports", "period", "lang", "recipients", "schedule", "next fire",
         "last delivery", "need attention"],
        [(r.name, r.reports, r.period, r.language, r.recipients, r.schedule,
          r.next_fire.isoformat(timespec="minutes") if r.next_fire else "",
          f"{r.last_status} ({r.last_fire.isoformat(timespec='minutes')})"
          if r.last_fire else "none yet", r.problems)
         for r in rows],
    )  # fmt: skip
    for error in errors:
        click.echo(f"subscription file skipped: {error}")


@reports_group.command("deliveries")
@click.option("--subscription", "name", help="Only this subscription.")
@click.option(
    "--problems", is_flag=True, help="Only deliveries retrying, failed, unknown or skipped."
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@json_option
@pass_state
def reports_deliveries(
    state: CliState, name: str | None, problems: bool, limit: int, as_json: bool
) -> None:
    """Deliveries, newest first: fire time, period, status (sent, retrying with the next try,
    failed, unknown, skipped), attempts, recipients and the last error."""
    from engine.subscriptions.deliveries import list_deliveries

    with transaction(state) as session:
        rows = list_deliveries(session, subscription=name, problems=problems, limit=limit)
    if as_json:
        emit_json(rows)
        return
    render_table(
        "Report deliveries",
        ["id", "subscription", "fire", "period", "status", "attempts", "recipients",
         "next try", "error"],
        [(r.id, r.subscription, ("sent by hand " if r.manual else "")
          + r.fire_at.isoformat(timespec="minutes"), r.period, r.status, r.attempts,
          r.recipients,
          r.next_attempt_at.isoformat(timespec="minutes") if r.status == "retrying"
          and r.next_attempt_at else "", r.error or "")
         for r in rows],
    )  # fmt: skip


@reports_group.command("send")
@click.argument("name")
@click.option(
    "--to", "to", multiple=True, help="Send to this address (repeatable) instead of the file's."
)
@json_option
@pass_state
def reports_send(state: CliState, name: str, to: tuple[str, ...], as_json: bool) -> None:
    """Deliver subscription NAME now, for its period as of now, through the configured email
    channel (SendGrid, or the file sink); recorded with the other deliveries. Exits 1 when it
    did not go (a retryable failure is retried by the tick)."""
    from engine.subscriptions.deliveries import send_now
    from engine.subscriptions.loader import load_named

    loaded = load_named(state.settings.reports_dir, name)
    app = state.app()
    outcome = send_now(app, loaded, to=list(to), at=app.clock.now())
    if as_json:
        emit_json(outcome)
    else:
        click.echo(outcome.message)
        for written in outcome.written:
            where = state.settings.outbox_dir / written
            shown = where if not state.settings.sendgrid_api_key else written
            click.echo(f"  written: {shown}")
    if outcome.status != "sent":
        raise SystemExit(1)


# --------------------------------------------------------------------------- entry point


import cli_cases  # noqa: E402, F401  (registers `campaign cases`; it imports this module)


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="campaign")


if __name__ == "__main__":
    main()
