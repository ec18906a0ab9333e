"""`campaign runs ...` and the switches of a launched run: `pause`, `resume`, `cancel`."""

from __future__ import annotations

from typing import Any

import click

from engine.cli.common import (
    CliState,
    emit_json,
    json_option,
    pass_state,
    reading,
    reading_session,
    render_table,
    show_value,
    writing,
)


@click.group("runs")
def runs_group() -> None:
    """Launched campaign runs."""


@runs_group.command("list")
@click.option("--campaign", help="Only runs of this campaign.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@json_option
@pass_state
def runs_list(state: CliState, campaign: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first."""
    # Core on a plain connection: `runs list` never imports the ORM (#18).
    from engine.run_listing import list_runs
    from engine.skipped_fires import count_skipped

    with reading(state) as connection:
        rows = list_runs(connection, campaign=campaign, limit=limit)
        skipped = count_skipped(connection, campaign=campaign)
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
                show_value(r.status + (f" ({r.status_reason})" if r.status_reason else "")),
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

    with reading_session(state) as session:
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

    with reading_session(state) as session:
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
    click.echo(change.words())


@click.command("pause")
@click.argument("run", type=int)
@click.option("--reason", help="Why (kept with the run).")
@json_option
@pass_state
def pause_command(state: CliState, run: int, reason: str | None, as_json: bool) -> None:
    """Pause run RUN: nothing is sent or called until it is resumed."""
    from engine.runs import pause_run

    with writing(state) as session:
        change = pause_run(session, run, at=state.app().clock.now(), reason=reason)
    _status_change(change, as_json)


@click.command("resume")
@click.argument("run", type=int)
@json_option
@pass_state
def resume_command(state: CliState, run: int, as_json: bool) -> None:
    """Resume paused run RUN."""
    from engine.runs import resume_run

    with writing(state) as session:
        change = resume_run(session, run, at=state.app().clock.now())
    _status_change(change, as_json)


@click.command("cancel")
@click.argument("run", type=int)
@click.option("--reason", help="Why (kept with the run and on exited enrollments).")
@json_option
@pass_state
def cancel_command(state: CliState, run: int, reason: str | None, as_json: bool) -> None:
    """Cancel run RUN for good: nothing more is sent; open enrollments exit."""
    from engine.runs import cancel_run

    with writing(state) as session:
        change = cancel_run(session, run, at=state.app().clock.now(), reason=reason)
    _status_change(change, as_json)
