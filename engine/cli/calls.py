"""`campaign calls ...`: call lists, the next call for an agent, the caller log (log, verify,
head), dispositions, and the dialer's export and results import.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from engine.cli.common import (
    CliState,
    duration_value,
    emit_json,
    json_option,
    pass_state,
    reading_session,
    rejects_option,
    render_table,
    show_value,
    stdin_is_terminal,
    writing,
)


@click.group("calls")
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
    from engine.calls.listing import list_calls
    from engine.calls.rules import CallRules

    with reading_session(state) as session:
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

    with reading_session(state) as session:
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


def _show_sheet(sheet: Any, gate: Any, *, resumed: bool = False) -> None:
    """The call sheet as the agent may see it (``gate``: engine/calls/verification.py Gate;
    ``sheet`` already holds only what the gate lets through)."""
    until = sheet.claimed_until.isoformat(timespec="minutes") if sheet.claimed_until else "-"
    click.echo(
        f"Task {sheet.task_id} ({sheet.kind}, {sheet.campaign or '-'} / "
        f"{sheet.step or '-'}), attempt {sheet.attempt}/{sheet.max_attempts}; "
        f"yours until {until}" + (" (you already held it)" if resumed else "")
    )
    click.echo(
        f"CALL {sheet.name} ({sheet.external_id}) on {sheet.phone}; local time "
        f"{sheet.local_time or 'unknown'}; language {sheet.locale or 'default'}"
    )
    click.echo("\nVerify before discussing the account (ask; never read the answer out):")
    for q in sheet.verification:
        click.echo(f"  - {q.ask}  [on file: {q.expected}]")
    if gate.verified:
        click.echo(f"Identity verified at {gate.verified_at}; the full account is shown.")
    else:
        click.echo(
            f"When the member has answered: campaign calls verify {sheet.task_id} "
            f"--agent {sheet.claimed_by}  (then the full account is shown)"
        )
    click.echo("\n--- script ---")
    click.echo(sheet.script or "(no script)")
    click.echo("--- account review ---")
    if gate.hidden:
        hidden = ", ".join(n.replace("_", " ") for n in gate.hidden)
        click.echo(f"  (shown once the identity is verified: {hidden})")
    for key, value in sheet.account.items():
        click.echo(f"  {key.replace('_', ' ')}: {show_value(value)}")
    click.echo(
        "  consents: "
        + ("; ".join(f"{k}: {v}" for k, v in sheet.consents.items()) or "none recorded")
    )
    if sheet.suppressions:
        click.echo("  suppressions: " + "; ".join(sheet.suppressions))
    if sheet.redemptions:
        click.echo(
            "  recent redemptions: "
            + "; ".join(f"{r['at']:%Y-%m-%d} {r['points'] or ''} pts" for r in sheet.redemptions)
        )
    if gate.shows("activity"):
        render_table(
            "Recent activity",
            ["when", "type", "points", "amount"],
            [
                (a["at"].isoformat(timespec="minutes"), a["type"], a["points"], a["amount"])
                for a in sheet.activity
            ],
        )
    if gate.shows("contacts"):
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
        from engine.cli.cases import show_case_panel

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
    questions, talking points and offer, and of the account only what the program shows
    before verification (`calls verify` shows the rest once the member is verified)."""
    from engine.calls.claiming import serve_next_in

    served = serve_next_in(state.app(), agent, lease=duration_value(lease), gated=True)
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
    _show_sheet(served.sheet, served.gate, resumed=served.claim.resumed)


@calls_group.command("verify")
@click.argument("task", type=int)
@click.option("--agent", required=True, help="Your login (the task must be your live claim).")
@json_option
@pass_state
def calls_verify(state: CliState, task: int, agent: str, as_json: bool) -> None:
    """Record that the member of TASK, your live claim, answered the verification questions,
    then show the full call sheet. Audited like the console's Verified button."""
    from engine.calls.agents import get_agent
    from engine.calls.scripts import gated_call_sheet
    from engine.calls.verification import verify_claim

    at = state.app().clock.now()
    with writing(state) as session:
        who = get_agent(session, agent)
        claimed = verify_claim(session, task, who.login, at=at)
        zone = who.timezone
        sheet, gate = gated_call_sheet(session, claimed, settings=state.settings, at=at, zone=zone)
    if as_json:
        emit_json({"sheet": sheet, "gate": gate})
        return
    _show_sheet(sheet, gate)


def _parse_fields(pairs: Sequence[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r}: use NAME=VALUE", param_hint="--field")
        fields[key.strip()] = value
    return fields


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
    with reading_session(state) as session:
        dispositions = dispositions_for(session, state.settings.dispositions_file, task)
    interactive = stdin_is_terminal() and not no_input and not as_json
    if disposition is None:
        if not interactive:
            raise click.UsageError("--disposition is required (see `campaign calls dispositions`)")
        codes = [d.code for d in dispositions]
        disposition = click.prompt("Disposition", type=click.Choice(codes, case_sensitive=False))
    if interactive:
        fields, flag, notes = _prompt_entry(dispositions.get(disposition), fields, flag, notes)
    with writing(state) as session:
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
    with reading_session(state) as session:
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

    with reading_session(state) as session:
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

    with reading_session(state) as session:
        rows = export_rows(
            session, at=state.app().clock.now(), agent=agent, day=day.date() if day else None
        )
    text = to_csv(rows)
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"{len(rows):,} tasks written to {output}", err=True)


@calls_group.command("import-results")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@rejects_option
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
