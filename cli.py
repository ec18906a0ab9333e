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
from sqlalchemy.orm import Session

from engine import programs
from engine.app import App, build_app
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
    _settings: Settings | None = None
    _app: App | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(**self.overrides)
        return self._settings

    def app(self, *, check_schema: bool = True) -> App:
        if self._app is None:
            self._app = build_app(self.settings, check_schema=check_schema)
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
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
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
# (add this section's commands below this line)


# ------------------------------------------------ demo
# (add this section's commands below this line)


# ------------------------------------------------ campaign definitions: validate
# (add this section's commands below this line)


# ------------------------------------------------ audiences, plan, explain, launch, runs
# (add this section's commands below this line)


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="campaign")


if __name__ == "__main__":
    main()
