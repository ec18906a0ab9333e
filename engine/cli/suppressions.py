"""`campaign suppressions sync`: SendGrid's suppression lists pulled into ours."""

from __future__ import annotations

import dataclasses

import click

from engine.cli.common import (
    CliState,
    emit_json,
    json_option,
    pass_state,
    render_table,
)


@click.group("suppressions")
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
