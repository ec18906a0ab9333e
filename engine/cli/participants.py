"""`campaign participants ...`, `campaign events ...` and `campaign suppress ...`: the member
file and activity imports, member read-side and erasure, and the suppression list by hand.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from engine.cli.common import (
    CliState,
    emit_json,
    json_option,
    pass_state,
    reading,
    reading_session,
    rejects_option,
    render_table,
    stdin_is_terminal,
    to_jsonable,
    writing,
)


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


_program_option = click.option(
    "--program", help="Program key [default: the only program, if there is one]."
)


_encoding_option = click.option(
    "--encoding",
    help="The file's encoding, e.g. cp1252 or latin-1 [default: UTF-8, with or without BOM; "
    "a file that is not UTF-8 is refused, naming the line].",
)


@click.group("participants")
def participants_group() -> None:
    """Program members: import the member file, look one up, list them."""


@participants_group.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@_program_option
@_format_option
@rejects_option
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
    # Core on a plain connection: `participants show` never imports the ORM (#18).
    from engine.participants.account import show_participant

    with reading(state) as connection:
        view = show_participant(connection, program, external_id)
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
        if not stdin_is_terminal():
            raise click.UsageError("erasure cannot be undone: confirm with --yes")
        click.confirm(f"Erase {len(ids):,} member(s)? This cannot be undone", abort=True)
    at = state.app().clock.now()
    receipts = []
    with writing(state) as session:
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

    with reading_session(state) as session:
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


@click.group("events")
def events_group() -> None:
    """Activity events (logins, redemptions, renewals, payments...)."""


@events_group.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@_program_option
@_format_option
@rejects_option
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

    with reading_session(state) as session:
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


@click.group("suppress")
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

    with writing(state) as session:
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

    with writing(state) as session:
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

    with reading_session(state) as session:
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
