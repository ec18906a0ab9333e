"""`campaign db ...`, `campaign init` and `campaign demo`: the schema, a new working folder, and
the demo that shows everything on generated data.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from engine.cli.common import (
    CliState,
    console,
    emit_json,
    json_option,
    pass_state,
)

if TYPE_CHECKING:
    from engine.app import App


@click.group()
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


@click.command("init")
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
    replaced = f" ({len(result.overwritten):,} overwritten)" if result.overwritten else ""
    click.echo(
        f"Wrote {len(result.written):,} files in {folder}{replaced}: campaign.toml, "
        f"campaigns/ ({', '.join(result.campaigns)}) and templates/."
    )
    click.echo("Next:")
    for command in result.next_commands:
        click.echo(f"  {command}")


@click.command("demo")
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
