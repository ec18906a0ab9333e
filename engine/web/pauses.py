"""Pause and resume on the agent's page (POST /agent/pause, /agent/resume), on the same
functions as `campaign agents pause/resume` (engine/calls/pauses.py). While paused the page
shows "paused: break since 10:02" and a Resume button instead of Next call; Next call (the
engine's claim) ends the pause too."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from engine.calls.pauses import RESUMED, end_pause, open_pause, pause_codes, start_pause
from engine.clock import ensure_utc
from engine.errors import EngineError

if TYPE_CHECKING:
    from engine.web.app import Console


@dataclass(frozen=True)
class PauseView:
    code: str
    since: datetime  # UTC
    since_local: str  # HH:MM in the agent's zone


def pause_view(session: Session, agent: str, zone: str) -> PauseView | None:
    pause = open_pause(session, agent)
    if pause is None:
        return None
    since = ensure_utc(pause.started_at)
    return PauseView(pause.code, since, since.astimezone(ZoneInfo(zone)).strftime("%H:%M"))


async def agent_pause(console: Console, request: Request) -> Response:
    from engine.web.app import _agent_post, agent_home  # the agent handlers' shared checks

    who, form, refused = await _agent_post(console, request)
    if refused is not None:
        return refused
    assert who.user is not None and who.user.agent is not None
    agent = who.user.agent
    at = console.app.clock.now()
    codes = pause_codes(console.app.settings)
    try:
        await run_in_threadpool(
            console.write,
            lambda s: start_pause(s, agent, form.get("code", ""), codes=codes, at=at, by=agent),
        )
    except EngineError as exc:
        return await agent_home(console, request, error=str(exc), status=409)
    return console.finish(who, RedirectResponse("/agent", status_code=303))


async def agent_resume(console: Console, request: Request) -> Response:
    from engine.web.app import _agent_post

    who, _form, refused = await _agent_post(console, request)
    if refused is not None:
        return refused
    assert who.user is not None and who.user.agent is not None
    agent = who.user.agent
    at = console.app.clock.now()
    await run_in_threadpool(
        console.write, lambda s: end_pause(s, agent, at=at, reason=RESUMED, by=agent)
    )
    return console.finish(who, RedirectResponse("/agent", status_code=303))
