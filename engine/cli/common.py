"""What every command shares: the error handling of the root group, the per-invocation state
(settings, app, clock), its transactions (writing or reading), and the JSON and table output.

Start-up time: every command pays for what this module imports, so it imports only click
and the engine's error and clock types. A command imports what it uses inside its function
(tests/test_startup.py checks this; bench/bench_startup.py measures it).
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
from typing import TYPE_CHECKING, Any

import click

from engine.clock import Clock, SystemClock
from engine.errors import EngineError, database_locked

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

    from engine.app import App
    from engine.settings import Settings


log = logging.getLogger("campaign")


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
            if not database_locked(exc):
                raise
            log.debug("database locked", exc_info=True)
            raise click.ClickException(
                "the database is busy (another process is writing to it); try again"
            ) from exc


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
def writing(state: CliState) -> Iterator[Session]:
    """One unit of work for a command that writes: commit on success, roll back on any error.
    On SQLite the database's writer from its first statement, so a command that reads before
    it writes waits for a running dispatcher, tick or webhook instead of failing at once
    ("database is locked") when that process commits between its read and its write."""
    from engine.db.session import writing as writing_session

    with writing_session(state.app().sessions) as session:
        yield session


@contextmanager
def reading_session(state: CliState) -> Iterator[Session]:
    """One transaction for a command that only reads (a list, a show, a report, a plan), so
    its queries see one state of the database. Never SQLite's writer: it neither waits for
    nor holds up a running dispatcher. Committed at the end like any unit of work, so a read
    that stores something once (the unsubscribe key a preview signs with, on a new database)
    keeps it."""
    with state.app().sessions() as session, session.begin():
        yield session


@contextmanager
def reading(state: CliState) -> Iterator[Connection]:
    """One read on a plain connection, in one transaction (the queries see one state of the
    database), rolled back at the end: for commands that only read through Core, which then
    never import sqlalchemy.orm or the models (#18)."""
    with state.app().engine.connect() as connection:
        yield connection


def to_jsonable(value: Any) -> Any:
    if hasattr(value, "as_json"):  # a report that shapes its own JSON
        return to_jsonable(value.as_json())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(to_jsonable(v) for v in value)
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


# The imports of members, events and dialer results all write rejected rows beside the file.
rejects_option = click.option(
    "--rejects",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write rejected rows [default: FILE's name + .rejects.csv, beside it].",
)


def show_value(value: Any, nested: bool = False) -> str:
    """A value (a dict, a list, a time, None) as one table cell."""
    if isinstance(value, dict):
        if nested:
            return "(" + ", ".join(f"{k} {show_value(v, True)}" for k, v in value.items()) + ")"
        return "; ".join(f"{k}: {show_value(v, True)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(show_value(v, True) for v in value) if value else "none"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return "-" if value is None else str(value)


def duration_value(value: str | None) -> Any:
    """An option's duration text ("36h", "30m") parsed, or a clean usage error."""
    from engine.definitions.duration_text import parse_duration  # no pydantic (#18)

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def stdin_is_terminal() -> bool:
    """Whether a person is typing (prompt them) rather than a script piping (never prompt)."""
    return sys.stdin.isatty()
