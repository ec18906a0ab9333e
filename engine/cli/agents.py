"""`campaign agents ...`: the call agents, their languages, targets and availability."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

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


@click.group("agents")
def agents_group() -> None:
    """Agents who work call lists."""


@agents_group.command("add")
@click.argument("login")
@click.option("--name", required=True, help="Full name.")
@click.option(
    "--role",
    type=click.Choice(["agent", "coordinator", "manager"]),
    default="agent",
    show_default=True,
    help="What they do.",
)
@click.option("--timezone", default="America/New_York", show_default=True, help="IANA zone.")
@click.option(
    "--daily-target",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Outbound calls per working day (the calling plan).",
)
@click.option(
    "--weekly-target",
    type=click.IntRange(min=0),
    help="Outbound calls per week [default: daily target × the week's business days].",
)
@click.option(
    "--monthly-target",
    type=click.IntRange(min=0),
    help="Outbound calls per month [default: daily target × the month's business days].",
)
@click.option("--team", "teams", multiple=True, help="A team whose queue they work (repeat).")
@click.option(
    "--language",
    "languages",
    multiple=True,
    help="A language they speak, e.g. zh (repeat): members who speak it are served to them first.",
)
@json_option
@pass_state
def agents_add(
    state: CliState,
    login: str,
    name: str,
    role: str,
    timezone: str,
    daily_target: int,
    weekly_target: int | None,
    monthly_target: int | None,
    teams: tuple[str, ...],
    languages: tuple[str, ...],
    as_json: bool,
) -> None:
    """Add agent LOGIN (name, role, timezone, calling-plan targets, teams, languages)."""
    from engine.calls.agents import add_agent

    with writing(state) as session:
        agent = add_agent(
            session,
            login,
            name=name,
            role=role,
            timezone=timezone,
            daily_target=daily_target,
            weekly_target=weekly_target,
            monthly_target=monthly_target,
            teams=teams,
            languages=languages,
            at=state.app().clock.now(),
        )
    if as_json:
        emit_json(agent)
        return
    click.echo(
        f"Agent {agent.login} ({agent.name}, {agent.role}) added; teams: "
        f"{', '.join(agent.teams) or 'none'}; languages: {', '.join(agent.languages) or 'any'}; "
        f"{_targets_text(agent)}."
    )


def _targets_text(agent: Any) -> str:
    """'daily target 40, weekly 150, monthly derived' for an AgentView."""

    def shown(target: int | None) -> str:
        return "derived" if target is None else str(target)

    return (
        f"daily target {agent.daily_target}, weekly {shown(agent.weekly_target)}, "
        f"monthly {shown(agent.monthly_target)}"
    )


class _TargetType(click.ParamType):
    """A target for `agents set`: a count of calls (0 or more), or `derived`."""

    name = "N|derived"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from engine.calls.agents import DERIVED

        if isinstance(value, int) or value == DERIVED:
            return value
        try:
            number = int(value)
        except ValueError:
            self.fail(f"{value!r} is not a number of calls or 'derived'", param, ctx)
        if number < 0:
            self.fail(f"{number} must be 0 or more", param, ctx)
        return number


@agents_group.command("set")
@click.argument("login")
@click.option(
    "--daily-target",
    type=click.IntRange(min=0),
    help="Outbound calls per working day.",
)
@click.option(
    "--weekly-target",
    type=_TargetType(),
    help="Outbound calls per week, or 'derived' (daily target × the week's business days).",
)
@click.option(
    "--monthly-target",
    type=_TargetType(),
    help="Outbound calls per month, or 'derived' (daily target × the month's business days).",
)
@click.option(
    "--team",
    "teams",
    multiple=True,
    help="Their teams from now on (repeat; replaces the teams they had).",
)
@click.option(
    "--language",
    "languages",
    multiple=True,
    help="The languages they speak from now on (repeat; replaces those they had; 'none': "
    "no language routing for them).",
)
@json_option
@pass_state
def agents_set(
    state: CliState,
    login: str,
    daily_target: int | None,
    weekly_target: int | Literal["derived"] | None,
    monthly_target: int | Literal["derived"] | None,
    teams: tuple[str, ...],
    languages: tuple[str, ...],
    as_json: bool,
) -> None:
    """Change agent LOGIN's calling-plan targets, teams or languages; what is not given stays
    as it is."""
    from engine.calls.agents import set_targets

    given = (daily_target, weekly_target, monthly_target)
    if all(value is None for value in given) and not teams and not languages:
        raise click.UsageError(
            "give --daily-target, --weekly-target, --monthly-target, --team or --language"
        )
    with writing(state) as session:
        agent = set_targets(
            session,
            login,
            daily_target=daily_target,
            weekly_target=weekly_target,
            monthly_target=monthly_target,
            teams=teams or None,
            languages=None if not languages else [x for x in languages if x != "none"],
        )
    if as_json:
        emit_json(agent)
        return
    click.echo(
        f"Agent {agent.login}: teams {', '.join(agent.teams) or 'none'}; languages "
        f"{', '.join(agent.languages) or 'any'}; {_targets_text(agent)}."
    )


@agents_group.command("disable")
@click.argument("login")
@json_option
@pass_state
def agents_disable(state: CliState, login: str, as_json: bool) -> None:
    """Disable agent LOGIN (they left): they claim nothing, their live claims go back to the
    queue, their agent-only callbacks go to their team's queue and the cases they were working
    become their team's."""
    from engine.calls.agents import disable_agent

    with writing(state) as session:
        change = disable_agent(session, login, at=state.app().clock.now())
    if as_json:
        emit_json(change)
        return
    if not change.changed:
        click.echo(f"Agent {change.agent.login} was disabled already.")
    click.echo(
        f"Agent {change.agent.login} disabled; {change.claims_released:,} claim(s) back in the "
        f"queue; {change.callbacks_to_team:,} agent-only callback(s) now served to the team "
        f"when due; {change.cases_to_team:,} case(s) they were working now their team's."
    )


@agents_group.command("enable")
@click.argument("login")
@json_option
@pass_state
def agents_enable(state: CliState, login: str, as_json: bool) -> None:
    """Enable agent LOGIN again."""
    from engine.calls.agents import enable_agent

    with writing(state) as session:
        change = enable_agent(session, login)
    if as_json:
        emit_json(change)
        return
    click.echo(
        f"Agent {change.agent.login} " + ("enabled." if change.changed else "was enabled already.")
    )


@agents_group.command("pause")
@click.argument("login")
@click.option(
    "--code",
    required=True,
    help="Why: one of the pause codes (setting pause_codes; default break, training, meeting).",
)
@json_option
@pass_state
def agents_pause(state: CliState, login: str, code: str, as_json: bool) -> None:
    """Pause agent LOGIN with a reason code: they are served no call until they resume or
    take the next call. Refused while they hold a claim (log or release it first)."""
    from engine.calls.pauses import pause_codes, start_pause

    app = state.app()
    with writing(state) as session:
        pause = start_pause(
            session, login, code, codes=pause_codes(app.settings), at=app.clock.now(), by="cli"
        )
        result = {"agent": pause.agent, "code": pause.code, "started_at": pause.started_at}
    if as_json:
        emit_json(result)
        return
    click.echo(f"Agent {login} paused ({result['code']}) since {result['started_at']:%H:%M} UTC.")


@agents_group.command("resume")
@click.argument("login")
@json_option
@pass_state
def agents_resume(state: CliState, login: str, as_json: bool) -> None:
    """End agent LOGIN's pause: they are available for calls again."""
    from engine.calls.agents import get_agent
    from engine.calls.pauses import RESUMED, end_pause

    app = state.app()
    with writing(state) as session:
        get_agent(session, login)  # an unknown login is an error, not "was not paused"
        pause = end_pause(session, login, at=app.clock.now(), reason=RESUMED, by="cli")
        seconds = (
            int((pause.ended_at - pause.started_at).total_seconds())
            if pause is not None and pause.ended_at is not None
            else 0
        )
        result = (
            None
            if pause is None
            else {
                "agent": pause.agent,
                "code": pause.code,
                "started_at": pause.started_at,
                "ended_at": pause.ended_at,
                "seconds": seconds,
            }
        )
    if as_json:
        emit_json({"agent": login, "resumed": result})
        return
    if result is None:
        click.echo(f"Agent {login} was not paused.")
        return
    minutes = seconds // 60
    click.echo(f"Agent {login} resumed after {minutes} min of {result['code']}.")


@agents_group.command("list")
@click.option("--team", help="Only agents of this team.")
@json_option
@pass_state
def agents_list(state: CliState, team: str | None, as_json: bool) -> None:
    """List agents with their role, zone, teams and calling-plan targets."""
    from engine.calls.agents import list_agents

    with reading_session(state) as session:
        rows = list_agents(session, team=team)
    if as_json:
        emit_json(rows)
        return
    render_table(
        "Agents",
        [
            "login",
            "name",
            "role",
            "timezone",
            "teams",
            "languages",
            "daily target",
            "weekly target",
            "monthly target",
            "state",
        ],
        [
            (
                a.login,
                a.name,
                a.role,
                a.timezone,
                ", ".join(a.teams),
                ", ".join(a.languages),
                a.daily_target,
                "derived" if a.weekly_target is None else a.weekly_target,
                "derived" if a.monthly_target is None else a.monthly_target,
                "active" if a.active else "disabled",
            )
            for a in rows
        ],
    )


@agents_group.command("show")
@click.argument("login")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Plan day [today].")
@json_option
@pass_state
def agents_show(state: CliState, login: str, day: datetime | None, as_json: bool) -> None:
    """Show agent LOGIN and their calling plan: calls today, this week and this month
    against their targets."""
    from zoneinfo import ZoneInfo

    from engine.calls.agents import get_agent, view
    from engine.calls.reporting import calling_plan

    with reading_session(state) as session:
        agent = view(get_agent(session, login))
        when = (
            day.date()
            if day
            else state.app().clock.now().astimezone(ZoneInfo(agent.timezone)).date()
        )
        plan = calling_plan(session, login, day=when)
    if as_json:
        emit_json({"agent": agent, "calling_plan": plan})
        return
    click.echo(
        f"{agent.login}: {agent.name} ({agent.role}), {agent.timezone}, teams "
        f"{', '.join(agent.teams) or 'none'}, languages {', '.join(agent.languages) or 'any'}, "
        f"{_targets_text(agent)}"
    )
    render_table(
        f"Calling plan around {when.isoformat()}",
        ["period", "from", "to", "calls", "target", "target from", "attainment"],
        [
            (
                f.period,
                f.start,
                f.end,
                f.calls,
                f.target,
                f.target_source,
                "" if f.attainment is None else f"{f.attainment:.0%}",
            )
            for f in plan.figures
        ],
    )
