"""Agents: the people who work call lists (add, set targets and teams, disable and enable,
list, show).

A disabled agent (one who left, or is away for long) keeps their history but is served
nothing: their live claims go back to the queue when they are disabled, and their agent-only
callbacks fall back to the team at once (engine/calls/rules.py)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.clock import ensure_utc
from engine.db.models import AGENT_ROLES, Agent, CallTask
from engine.errors import InputError, NotFoundError
from engine.policy.zones import is_zone

LOGIN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
TEAM = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
LANGUAGE = re.compile(r"^[a-z]{2,3}$")  # an ISO 639 code: zh, es, en, yue

# For `set_targets`: drop an explicit weekly / monthly target and derive it again from the
# daily one (None there means "leave as it is").
DERIVED: Literal["derived"] = "derived"


@dataclass(frozen=True)
class AgentView:
    login: str
    name: str
    role: str
    timezone: str
    daily_target: int
    weekly_target: int | None  # None: the daily target times the business days of the week
    monthly_target: int | None  # None: the daily target times the business days of the month
    teams: list[str]
    active: bool
    created_at: datetime
    languages: list[str]  # [] = served every member's tasks alike (no language routing)


def view(agent: Agent) -> AgentView:
    return AgentView(
        login=agent.login,
        name=agent.name,
        role=agent.role,
        timezone=agent.timezone,
        daily_target=agent.daily_target,
        weekly_target=agent.weekly_target,
        monthly_target=agent.monthly_target,
        teams=list(agent.teams or []),
        active=agent.active,
        created_at=agent.created_at,
        languages=list(agent.languages or []),
    )


def add_agent(
    session: Session,
    login: str,
    *,
    name: str,
    role: str = "agent",
    timezone: str = "America/New_York",
    daily_target: int = 0,
    weekly_target: int | None = None,
    monthly_target: int | None = None,
    teams: Sequence[str] = (),
    languages: Sequence[str] = (),
    at: datetime,
) -> AgentView:
    """Create an agent; refuses a login in use, an unknown role or zone, a bad team name or a
    negative target. A weekly or monthly target left None is derived from the daily one."""
    login = login.strip().lower()
    if not LOGIN.match(login):
        raise InputError(
            f"login {login!r}: use lower case letters, digits, '.', '_' or '-' (at most 64)"
        )
    if role not in AGENT_ROLES:
        raise InputError(f"role {role!r}: use one of {', '.join(AGENT_ROLES)}")
    if not is_zone(timezone):
        raise InputError(f"timezone {timezone!r} is not an IANA zone, e.g. America/Chicago")
    _check_target("daily", daily_target)
    _check_target("weekly", weekly_target)
    _check_target("monthly", monthly_target)
    clean = _clean_teams(teams)
    spoken = clean_languages(languages)
    if session.scalar(select(Agent.id).where(Agent.login == login)) is not None:
        raise InputError(f"agent {login!r} already exists")
    agent = Agent(
        login=login,
        name=name.strip() or login,
        role=role,
        timezone=timezone,
        daily_target=daily_target,
        weekly_target=weekly_target,
        monthly_target=monthly_target,
        teams=clean,
        languages=spoken,
        active=True,
        created_at=ensure_utc(at),
    )
    try:
        with session.begin_nested():
            session.add(agent)
            session.flush()
    except IntegrityError:
        raise InputError(f"agent {login!r} already exists") from None
    return view(agent)


def _clean_teams(teams: Sequence[str]) -> list[str]:
    clean: list[str] = []
    for team in teams:
        team = team.strip().lower()
        if not TEAM.match(team):
            raise InputError(f"team {team!r}: use lower case letters, digits, '_' or '-'")
        if team not in clean:
            clean.append(team)
    return clean


def clean_languages(languages: Sequence[str]) -> list[str]:
    """Language codes, lower case, each once, in the order given; refuses anything else."""
    clean: list[str] = []
    for language in languages:
        code = language.strip().lower()
        if not LANGUAGE.match(code):
            raise InputError(
                f"language {language!r}: give an ISO 639 language code alone, e.g. zh, es, en"
            )
        if code not in clean:
            clean.append(code)
    return clean


def _check_target(period: str, target: int | None) -> None:
    if target is not None and target < 0:
        raise InputError(f"{period} target {target} must be 0 or more")


def set_targets(
    session: Session,
    login: str,
    *,
    daily_target: int | None = None,
    weekly_target: int | Literal["derived"] | None = None,
    monthly_target: int | Literal["derived"] | None = None,
    teams: Sequence[str] | None = None,
    languages: Sequence[str] | None = None,
) -> AgentView:
    """Change an agent's calling-plan targets, teams and languages. None leaves a target
    (or the teams, the languages) as it is; ``DERIVED`` drops an explicit weekly or monthly
    target, which is then the daily one times the business days of the period again;
    ``teams`` replaces the agent's teams and ``languages`` their languages (an empty list: no
    language routing for them). Refuses a negative target or a bad team name or language,
    changing nothing."""
    clean = _clean_teams(teams) if teams is not None else None
    spoken = clean_languages(languages) if languages is not None else None
    _check_target("daily", daily_target)
    for period, target in (("weekly", weekly_target), ("monthly", monthly_target)):
        if target != DERIVED:
            _check_target(period, target)
    agent = get_agent(session, login)
    if daily_target is not None:
        agent.daily_target = daily_target
    if weekly_target is not None:
        agent.weekly_target = None if weekly_target == DERIVED else weekly_target
    if monthly_target is not None:
        agent.monthly_target = None if monthly_target == DERIVED else monthly_target
    if clean is not None:
        agent.teams = clean
    if spoken is not None:
        agent.languages = spoken
    session.flush()
    return view(agent)


@dataclass(frozen=True)
class StateChange:
    agent: AgentView
    changed: bool  # False: the agent was in that state already
    claims_released: int  # disable: live claims given back to the queue
    callbacks_to_team: int  # disable: their open agent-only callbacks, now the team's too
    cases_to_team: int = 0  # disable: the cases they were working, now their team's


def disable_agent(session: Session, login: str, *, at: datetime) -> StateChange:
    """Disable an agent: they can claim nothing; an open pause ends; their live claims go back
    to the queue, their open agent-only callbacks are served to the team at once and the cases
    they were working become their team's (engine/cases: refused, with nothing changed, if a
    case has no team to go to)."""
    from engine.calls.pauses import DISABLED, end_pause
    from engine.cases.store import hand_over_cases

    at = ensure_utc(at)
    agent = get_agent(session, login)
    changed = agent.active
    agent.active = False
    # A pause ends with the agent: paused time is counted up to now, not for ever.
    end_pause(session, agent.login, at=at, reason=DISABLED, by="agents disable")
    released = session.execute(
        update(CallTask)
        .where(
            CallTask.status == "claimed",
            CallTask.claimed_by == agent.login,
            CallTask.claimed_until >= at,
        )
        .values(status="open", claimed_until=None, updated_at=at)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    callbacks = session.scalar(
        select(func.count())
        .select_from(CallTask)
        .where(
            CallTask.kind == "callback",
            CallTask.assigned_agent == agent.login,
            CallTask.status.in_(("open", "claimed")),
        )
    )
    session.flush()
    cases = hand_over_cases(session, agent.login, list(agent.teams or []), at=at)
    session.flush()
    return StateChange(view(agent), changed, int(released or 0), int(callbacks or 0), len(cases))


def enable_agent(session: Session, login: str) -> StateChange:
    """Enable a disabled agent again (their callbacks not yet taken are theirs again)."""
    agent = get_agent(session, login)
    changed = not agent.active
    agent.active = True
    session.flush()
    return StateChange(view(agent), changed, 0, 0)


def agent_key(login: str) -> str:
    """How a login is stored and looked up."""
    return login.strip().lower()


def unknown_agent(login: str) -> NotFoundError:
    return NotFoundError(f"no agent {login!r}; add one with `campaign agents add`")


def get_agent(session: Session, login: str) -> Agent:
    agent = session.scalar(select(Agent).where(Agent.login == agent_key(login)))
    if agent is None:
        raise unknown_agent(login)
    return agent


def locked_agent(session: Session, login: str) -> Agent:
    """:func:`get_agent`, its row held until the transaction ends (PostgreSQL ``FOR UPDATE``,
    in the same statement), so what opens a claim or a pause for one agent runs one at a time,
    each seeing what the other committed: a pause is refused for a claim taken meanwhile, and
    a claim ends a pause started meanwhile (never both open). SQLite needs nothing: the write
    lock taken first in those transactions (engine/calls/tasks.py write_lock) serialises them
    already."""
    mine = select(Agent).where(Agent.login == agent_key(login))
    if session.get_bind().dialect.name == "postgresql":
        mine = mine.with_for_update()
    agent = session.scalar(mine)
    if agent is None:
        raise unknown_agent(login)
    return agent


def list_agents(session: Session, *, team: str | None = None) -> list[AgentView]:
    agents = [view(a) for a in session.scalars(select(Agent).order_by(Agent.login))]
    if team is not None:
        agents = [a for a in agents if team in a.teams]
    return agents
