"""What moves campaigns forward in time: `campaign advance`, `tick` (one pass of everything due),
`scheduler` (the daemon) and `serve` (the webhook and unsubscribe server).
"""

from __future__ import annotations

import logging
from typing import Any

import click

from engine.cli.common import (
    CliState,
    emit_json,
    json_option,
    log,
    pass_state,
)
from engine.logs import JsonFormatter


@click.command("advance")
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


@click.command("tick")
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


@click.command("scheduler")
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
        elif item.refused:
            click.echo(item.refused)
        else:
            click.echo(f"launched {item.campaign}: run {item.run_id}, {item.enrolled:,} enrolled")

    result = run_scheduler(app, on_tick=on_tick, on_launch=on_launch)
    why = f" ({result.stopped_by})" if result.stopped_by else ""
    click.echo(
        f"Scheduler stopped{why}: {result.ticks:,} tick(s), {len(result.launched):,} launch(es), "
        f"{result.sent:,} message(s) sent.",
        err=True,
    )
    for error in result.errors:
        click.echo(f"error: {error}", err=True)


@click.command("serve")
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
