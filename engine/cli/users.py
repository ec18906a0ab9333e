"""`campaign users ...`: who may sign in to the browser console; thin commands over
engine/web/users.py."""

from __future__ import annotations

import sys

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

ROLES = click.Choice(["agent", "supervisor", "manager", "coordinator"], case_sensitive=False)


@click.group("users")
def users_group() -> None:
    """People who sign in to the browser console (`campaign serve`: /agent, /floor) and their
    roles: agent, supervisor, manager, coordinator (see docs/console.md)."""


def _password_from_stdin(enabled: bool) -> str | None:
    if not enabled:
        return None
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise click.UsageError("--password-stdin: standard input held no password")
    return line


def _print_password(login: str, password: str | None, as_json: bool) -> None:
    if password is not None and not as_json:
        click.echo(f"First password for {login} (shown once; they sign in with it): {password}")


@users_group.command("add")
@click.argument("login")
@click.option(
    "--role",
    type=ROLES,
    required=True,
    help="agent (an agent's own login), supervisor, manager or coordinator.",
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of generating one.",
)
@json_option
@pass_state
def users_add(state: CliState, login: str, role: str, password_stdin: bool, as_json: bool) -> None:
    """Add a console user; prints a generated first password once (or reads one from stdin).
    An agent's user must have the login of an agent (`campaign agents add`)."""
    from engine.web.users import add_user

    password = _password_from_stdin(password_stdin)
    with writing(state) as session:
        user, generated = add_user(
            session, login, role=role, at=state.app().clock.now(), password=password
        )
    if as_json:
        emit_json({"user": user, "password": generated})
        return
    click.echo(
        f"Added {user.login} ({user.role}" + (f", agent {user.agent}" if user.agent else "") + ")."
    )
    _print_password(user.login, generated, as_json)


@users_group.command("disable")
@click.argument("login")
@json_option
@pass_state
def users_disable(state: CliState, login: str, as_json: bool) -> None:
    """Stop a user signing in; signs them out of every browser at once."""
    from engine.web.users import disable_user

    with writing(state) as session:
        user = disable_user(session, login, at=state.app().clock.now())
    if as_json:
        emit_json(user)
        return
    click.echo(f"{user.login} is disabled and signed out everywhere.")


@users_group.command("enable")
@click.argument("login")
@json_option
@pass_state
def users_enable(state: CliState, login: str, as_json: bool) -> None:
    """Let a disabled user sign in again (with their current password)."""
    from engine.web.users import enable_user

    with writing(state) as session:
        user = enable_user(session, login, at=state.app().clock.now())
    if as_json:
        emit_json(user)
        return
    click.echo(f"{user.login} may sign in again.")


@users_group.command("reset-password")
@click.argument("login")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the new password from standard input instead of generating one.",
)
@json_option
@pass_state
def users_reset_password(state: CliState, login: str, password_stdin: bool, as_json: bool) -> None:
    """Give a user a new password (printed once unless read from stdin); signs them out."""
    from engine.web.users import reset_password

    password = _password_from_stdin(password_stdin)
    with writing(state) as session:
        user, generated = reset_password(
            session, login, at=state.app().clock.now(), password=password
        )
    if as_json:
        emit_json({"user": user, "password": generated})
        return
    click.echo(f"New password set for {user.login}; they are signed out everywhere.")
    _print_password(user.login, generated, as_json)


@users_group.command("set-role")
@click.argument("login")
@click.argument("role", type=ROLES)
@json_option
@pass_state
def users_set_role(state: CliState, login: str, role: str, as_json: bool) -> None:
    """Change a user's role (recorded in the audit; signs them out)."""
    from engine.web.users import set_role

    with writing(state) as session:
        user = set_role(session, login, role, at=state.app().clock.now())
    if as_json:
        emit_json(user)
        return
    click.echo(f"{user.login} is now {user.role}.")


@users_group.command("list")
@json_option
@pass_state
def users_list(state: CliState, as_json: bool) -> None:
    """Console users, their role, linked agent and whether they may sign in."""
    from engine.web.users import list_users

    with reading_session(state) as session:
        users = list_users(session)
    if as_json:
        emit_json(users)
        return
    render_table(
        "Console users",
        ["login", "role", "agent", "active", "password set"],
        [
            (
                u.login,
                u.role,
                u.agent or "",
                "yes" if u.active else "no",
                u.password_set_at.isoformat(timespec="minutes"),
            )
            for u in users
        ],
    )


@users_group.command("audit")
@click.option("--login", help="Only this user's events.")
@click.option(
    "--limit",
    type=click.IntRange(1, 10000),
    default=50,
    show_default=True,
    help="Most recent events shown.",
)
@json_option
@pass_state
def users_audit(state: CliState, login: str | None, limit: int, as_json: bool) -> None:
    """The console's audit: sign-ins, failed sign-ins (with why), sign-outs, user and role
    changes, newest first."""
    from engine.web.audit import recent

    with reading_session(state) as session:
        rows = recent(session, login=login, limit=limit)
    if as_json:
        emit_json(rows)
        return
    render_table(
        "Console audit",
        ["when", "event", "login", "address", "by", "detail"],
        [
            (
                r.at.isoformat(timespec="seconds"),
                r.event,
                r.login,
                r.address or "",
                r.actor or "",
                r.detail or "",
            )
            for r in rows
        ],
    )
