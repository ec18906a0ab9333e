"""The supervisor's wallboard (`/floor`): who is signed in and what they are doing, calls
today against each agent's daily target, the queue by team, callbacks due in the next hour,
and the standards tiles of engine/web/floor_tiles.py (escalation rate, follow-up breaches,
callbacks nobody can take, queue by team and campaign). It refreshes itself every
:data:`REFRESH_SECONDS`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from engine.calls.idle import idle_times
from engine.calls.pauses import open_pauses
from engine.clock import ensure_utc
from engine.db.models import Agent, CallerLogEntry, CallTask, ConsoleAuditEvent
from engine.web import audit, floor_tiles
from engine.web.auth import guard, visitor
from engine.web.sessions import LIFETIME

if TYPE_CHECKING:
    from engine.web.app import Console

REFRESH_SECONDS = 30
FLOOR_ROLES = ("supervisor", "manager", "coordinator")


@dataclass(frozen=True)
class AgentState:
    login: str
    name: str
    state: str  # "on a call (task N)", "paused (break) since 10:02 UTC", "signed in", ...
    calls_today: int
    daily_target: int
    idle_since: datetime | None = None  # signed in, neither on a call nor paused, since then


@dataclass(frozen=True)
class Floor:
    agents: list[AgentState]
    queue: list[tuple[str, int]]  # (team, open tasks due now)
    callbacks_next_hour: int
    at: datetime


def _signed_in(session: Session, login: str, at: datetime) -> bool:
    """Signed in within a session's lifetime and not signed out since."""
    last = session.execute(
        select(ConsoleAuditEvent.event)
        .where(
            ConsoleAuditEvent.login == login,
            ConsoleAuditEvent.event.in_((audit.SIGN_IN, audit.SIGN_OUT)),
            ConsoleAuditEvent.at > at - LIFETIME,
        )
        .order_by(ConsoleAuditEvent.at.desc(), ConsoleAuditEvent.id.desc())
        .limit(1)
    ).scalar()
    return last == audit.SIGN_IN


def floor(session: Session, *, at: datetime) -> Floor:
    at = ensure_utc(at)
    claims = dict(
        session.execute(
            select(CallTask.claimed_by, func.min(CallTask.id))
            .where(CallTask.status == "claimed", CallTask.claimed_until >= at)
            .group_by(CallTask.claimed_by)
        ).all()
    )
    paused = open_pauses(session)
    # Idle since (engine/calls/idle.py): a session is at most LIFETIME long, so a current idle
    # stretch began within it.
    idle = idle_times(session, start=at - LIFETIME, end=at, at=at)
    agents = []
    for agent in session.scalars(select(Agent).where(Agent.active).order_by(Agent.login)):
        start = datetime.combine(at.astimezone(ZoneInfo(agent.timezone)).date(), time(0))
        start = start.replace(tzinfo=ZoneInfo(agent.timezone))
        calls = session.scalar(
            select(func.count())
            .select_from(CallerLogEntry)
            .where(CallerLogEntry.agent == agent.login, CallerLogEntry.logged_at >= start)
        )
        if agent.login in claims:
            state = f"on a call (task {claims[agent.login]})"
        elif agent.login in paused:  # engine/calls/pauses.py: never while on a call
            pause = paused[agent.login]
            state = f"paused ({pause.code}) since {ensure_utc(pause.started_at):%H:%M} UTC"
        elif _signed_in(session, agent.login, at):
            state = "signed in, idle"
        else:
            state = "signed out"
        since = idle[agent.login].idle_since if agent.login in idle else None
        if since is not None and state == "signed in, idle":
            state = f"signed in, idle since {since:%H:%M} UTC"
        agents.append(
            AgentState(agent.login, agent.name, state, int(calls or 0), agent.daily_target, since)
        )
    queue = [
        (team or "(no team)", int(n))
        for team, n in session.execute(
            select(CallTask.team, func.count())
            .where(CallTask.status == "open", CallTask.due_at <= at)
            .group_by(CallTask.team)
            .order_by(CallTask.team)
        ).all()
    ]
    callbacks = session.scalar(
        select(func.count())
        .select_from(CallTask)
        .where(
            CallTask.kind == "callback",
            CallTask.status == "open",
            CallTask.due_at <= at + timedelta(hours=1),
        )
    )
    return Floor(agents, queue, int(callbacks or 0), at)


async def floor_page(console: Console, request: Request) -> Response:
    who = await visitor(console, request)
    refused = guard(console, who, request, *FLOOR_ROLES)
    if refused is not None:
        return refused
    at = console.app.clock.now()
    settings = console.app.settings

    def read(s: Session) -> tuple[Floor, floor_tiles.Tiles]:
        data = floor(s, at=at)
        present = {a.login for a in data.agents if a.state != "signed out"}
        return data, floor_tiles.tiles(s, settings, at=at, signed_in=present)

    data, tiles = await run_in_threadpool(console.read, read)
    return console.page(who, "floor.html", floor=data, tiles=tiles, refresh=REFRESH_SECONDS)
