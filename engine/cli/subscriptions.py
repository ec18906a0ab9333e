"""`campaign reports ...`: report subscriptions (list, deliveries, send now)."""

from __future__ import annotations

import click

from engine.cli.common import (
    CliState,
    emit_json,
    json_option,
    pass_state,
    reading_session,
    render_table,
)


@click.group("reports")
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
    with reading_session(state) as session:
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

    with reading_session(state) as session:
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
