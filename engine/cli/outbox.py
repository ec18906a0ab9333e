"""Sending: `campaign dispatch` (the outbox worker), `campaign outbox ...` (list, settle,
reconcile, requeue) and `campaign send-test` (one real message to an address of your choice).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from engine.cli.common import (
    CliState,
    emit_json,
    json_option,
    pass_state,
    reading_session,
    render_table,
    writing,
)

if TYPE_CHECKING:
    from engine.app import App


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
        from engine.sending.outbox import count_due

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


@click.command("dispatch")
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
    from engine.sending.dispatch import dispatch

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


@click.group("outbox")
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
    from engine.sending.outbox import list_messages

    with reading_session(state) as session:
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
    from engine.sending.outbox import count_unknown, unknown_messages

    when = parse_since(since, now=state.clock.now()) if since else None
    with reading_session(state) as session:
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
    from engine.sending.outbox import resolve, resolve_many

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
        with writing(state) as session:
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
    with writing(state) as session:
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
    from engine.sending.reconcile import reconcile

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
        f"{summary.checked:,} message(s) of unknown fate checked; {summary.settled:,} {verb} as "
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
        click.echo(f"  {count:,} left unknown: {why.get(reason, reason)}")
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
    from engine.sending.outbox import requeue

    now = state.clock.now()
    when = parse_since(since, now=now) if since else None
    with writing(state) as session:
        result = requeue(
            session, at=now, status=status, reason=reason, run_id=run_id, since=when, note=note
        )
    if as_json:
        emit_json(result)
        return
    click.echo(f"{result.count:,} {status} message(s) queued again")


@click.command("send-test")
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
    from engine.sending.send_test import send_test

    loaded = load_campaign(state.settings.campaigns_dir, campaign)
    channels = build_channels(state.settings, clock=state.clock)
    try:
        # It only reads (the message is not recorded): never the writer while it sends.
        with reading_session(state) as session:
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
