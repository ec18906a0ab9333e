"""`campaign cases ...`: thin commands over engine/cases: complaints, escalations and requests
for help followed until they are closed."""

from __future__ import annotations

from typing import Any

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


@click.group("cases")
def cases_group() -> None:
    """Complaints, escalations and requests for help followed until they are closed: owner,
    status, due time from the program's service level, history of every call, note and
    message (see docs/cases.md)."""


def _when(value: Any) -> str:
    return "" if value is None else value.isoformat(timespec="minutes")


def _show(view: Any) -> None:
    c = view.case
    click.echo(
        f"Case {c.id} ({c.program}) member {c.external_id}: {c.category}, {c.status}"
        + (" OVERDUE" if c.overdue else "")
    )
    click.echo(f"  summary: {c.summary or '-'}")
    click.echo(
        f"  owner: {c.owner}; opened {_when(c.opened_at)} by {view.opened_by} ({view.source})"
    )
    click.echo(
        f"  due: {_when(c.due_at)}" + (f"; reopened {view.reopened}x" if view.reopened else "")
    )
    if c.root_cause:
        click.echo(f"  root cause: {c.root_cause}; resolution: {view.resolution}")
    if view.follow_up_task_id:
        click.echo(f"  follow-up: call task {view.follow_up_task_id}")
    render_table(
        "History",
        ["when", "what", "by", "status", "call", "text"],
        [
            (
                _when(h.at),
                h.kind,
                h.by,
                f"{h.status_from} -> {h.status_to}" if h.status_to else "",
                f"#{h.caller_log_seq} {h.disposition}" if h.caller_log_seq else "",
                h.text or "",
            )
            for h in view.history
        ],
    )
    for breach in view.breaches:
        click.echo(f"  BREACH of the follow-up standard: {breach}")


def show_case_panel(view: Any) -> None:
    """The case on the agent's call sheet (`calls next`): what it is and its history."""
    click.echo("\n--- case ---")
    _show(view)


def _output(view: Any, as_json: bool, lead: str | None = None) -> None:
    if as_json:
        emit_json(view)
        return
    if lead:
        click.echo(lead)
    _show(view)


@cases_group.command("open")
@click.argument("external_id")
@click.option("--category", required=True, help="billing, points, service... (docs/cases.md).")
@click.option("--summary", required=True, help="What the case is about.")
@click.option("--by", "by", required=True, help="Your login.")
@click.option("--program", help="The member's program (key) when there are several.")
@click.option("--agent", help="Owner: this agent [default: you].")
@click.option("--team", help="Owner: this team.")
@json_option
@pass_state
def cases_open(
    state: CliState,
    external_id: str,
    category: str,
    summary: str,
    by: str,
    program: str | None,
    agent: str | None,
    team: str | None,
    as_json: bool,
) -> None:
    """Open a case for member EXTERNAL_ID by hand (a second one in the same category while
    one is being worked joins it)."""
    from engine.cases.commands import open_by_hand

    at = state.app().clock.now()
    with writing(state) as session:
        view, joined = open_by_hand(
            session,
            state.settings,
            external_id,
            category=category,
            summary=summary,
            by=by,
            at=at,
            program=program,
            agent=agent,
            team=team,
        )
    _output(view, as_json, f"Joined the active case {view.case.id}." if joined else None)


@cases_group.command("list")
@click.option("--owner", help="Only cases this agent owns.")
@click.option("--team", help="Only cases this team owns.")
@click.option("--category", help="Only this category.")
@click.option("--program", help="Only this program (key).")
@click.option("--overdue", is_flag=True, help="Only cases past their due time.")
@click.option("--breaches", is_flag=True, help="Only cases with a follow-up standard breach.")
@click.option("--all", "include_done", is_flag=True, help="Resolved and closed cases too.")
@json_option
@pass_state
def cases_list(
    state: CliState,
    owner: str | None,
    team: str | None,
    category: str | None,
    program: str | None,
    overdue: bool,
    breaches: bool,
    include_done: bool,
    as_json: bool,
) -> None:
    """Cases being worked, soonest due first: owner, status, due time, overdue, breaches of
    the follow-up standard (at least two attempts, at most eight business hours apart)."""
    from engine.cases.views import list_cases

    at = state.app().clock.now()
    with reading_session(state) as session:
        rows = list_cases(
            session,
            at=at,
            owner=owner,
            team=team,
            category=category,
            program=program,
            overdue=overdue,
            breaches=breaches,
            include_done=include_done,
        )
    if as_json:
        emit_json(rows)
        return
    render_table(
        f"Cases ({len(rows):,})",
        ["id", "member", "category", "status", "owner", "due", "overdue", "breaches", "summary"],
        [
            (
                r.id,
                r.external_id,
                r.category,
                r.status,
                r.owner,
                _when(r.due_at),
                "OVERDUE" if r.overdue else "",
                r.breaches or "",
                (r.summary or "")[:60],
            )
            for r in rows
        ],
    )


@cases_group.command("show")
@click.argument("case_id", type=int, metavar="ID")
@json_option
@pass_state
def cases_show(state: CliState, case_id: int, as_json: bool) -> None:
    """One case: member, owner, status, due time, root cause, its history in order (every
    call with its caller log entry, note, message and status change, with who and when) and
    its follow-up standard breaches."""
    from engine.cases.views import show_case

    at = state.app().clock.now()
    with reading_session(state) as session:
        view = show_case(session, case_id, at=at)
    _output(view, as_json)


@cases_group.command("assign")
@click.argument("case_id", type=int, metavar="ID")
@click.option("--agent", help="The agent who owns it now.")
@click.option("--team", help="The team that owns it now.")
@click.option("--by", "by", required=True, help="Your login.")
@json_option
@pass_state
def cases_assign(
    state: CliState, case_id: int, agent: str | None, team: str | None, by: str, as_json: bool
) -> None:
    """Give case ID to an agent or a team; its follow-up call moves to their list."""
    from engine.cases.commands import assign_case

    at = state.app().clock.now()
    with writing(state) as session:
        view = assign_case(session, case_id, agent=agent, team=team, by=by, at=at)
    _output(view, as_json)


@cases_group.command("note")
@click.argument("case_id", type=int, metavar="ID")
@click.argument("text")
@click.option("--by", "by", required=True, help="Your login.")
@click.option(
    "--waiting-on",
    type=click.Choice(["member", "us"]),
    help="Whose move it is now (waiting on the member takes its follow-up call off the lists).",
)
@json_option
@pass_state
def cases_note(
    state: CliState, case_id: int, text: str, by: str, waiting_on: str | None, as_json: bool
) -> None:
    """Add a note to case ID (and say whose move it is now)."""
    from engine.cases.commands import note_case

    at = state.app().clock.now()
    with writing(state) as session:
        view = note_case(session, case_id, text, by=by, at=at, waiting_on=waiting_on)
    _output(view, as_json)


@cases_group.command("resolve")
@click.argument("case_id", type=int, metavar="ID")
@click.option("--root-cause", required=True, help="A code from the program's root-cause list.")
@click.option("--resolution", required=True, help="How it was resolved.")
@click.option("--by", "by", required=True, help="Your login.")
@json_option
@pass_state
def cases_resolve(
    state: CliState, case_id: int, root_cause: str, resolution: str, by: str, as_json: bool
) -> None:
    """Resolve case ID with a root cause from the program's list (any other is refused) and
    the resolution; its follow-up call leaves the lists."""
    from engine.cases.commands import resolve_case

    at = state.app().clock.now()
    with writing(state) as session:
        view = resolve_case(
            session,
            state.settings,
            case_id,
            root_cause=root_cause,
            resolution=resolution,
            by=by,
            at=at,
        )
    _output(view, as_json)


@cases_group.command("reopen")
@click.argument("case_id", type=int, metavar="ID")
@click.option("--by", "by", required=True, help="Your login.")
@click.option("--reason", help="Why it is open again.")
@json_option
@pass_state
def cases_reopen(state: CliState, case_id: int, by: str, reason: str | None, as_json: bool) -> None:
    """Reopen a resolved or closed case ID: waiting on us, a new due time, a follow-up call."""
    from engine.cases.commands import reopen_case

    at = state.app().clock.now()
    with writing(state) as session:
        view = reopen_case(session, state.settings, case_id, by=by, at=at, reason=reason)
    _output(view, as_json)


@cases_group.command("close")
@click.argument("case_id", type=int, metavar="ID")
@click.option("--by", "by", required=True, help="Your login.")
@json_option
@pass_state
def cases_close(state: CliState, case_id: int, by: str, as_json: bool) -> None:
    """Close a resolved case ID (only a resolved case, so every closed case has a root
    cause)."""
    from engine.cases.commands import close_case

    at = state.app().clock.now()
    with writing(state) as session:
        view = close_case(session, case_id, by=by, at=at)
    _output(view, as_json)
