"""Pause and resume on the agent's page (POST /agent/pause, /agent/resume), on the same
functions as `campaign agents pause/resume` (engine/calls/pauses.py). While paused the page
shows "paused: break since 10:02" and a Resume button instead of Next call; Next call (the
engine's claim) ends the pause too."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from engine.calls.pauses import RESUMED, end_pause, pause_codes, start_pause
from engine.clock import ensure_utc
from engine.errors import EngineError

if TYPE_CHECKING:
    from engine.web.app import Console


@dataclass(frozen=True)
class PauseView:
    code: str
    since: datetime  # UTC
    since_local: str  # HH:MM in the agent's zone


def pause_view(code: str | None, started_at: datetime | None, zone: str) -> PauseView | None:
    """The agent's open pause (its code and start, read with the agent's row), if any."""
    if code is None or started_at is None:
        return None
    since = ensure_utc(started_at)
    return PauseView(code, since, since.astimezone(ZoneInfo(zone)).strftime("%H:%M"))


async def agent_pause(console: Console, request: Request) -> Response:
    from engine.web.app import _agent_write, _posted, agent_home  # the agent handlers' checks

    posted = await _posted(console, request)
    codes = pause_codes(console.app.settings)
    code = posted.form.get("code", "")
    try:
        who, _, refused = await _agent_write(
            console,
            request,
            posted,
            lambda s, me: start_pause(s, me.login, code, codes=codes, at=posted.at, by=me.login),
        )
    except EngineError as exc:
        return await agent_home(console, request, error=str(exc), status=409)
    if refused is not None:
        return refused
    return console.finish(who, RedirectResponse("/agent", status_code=303))


async def agent_resume(console: Console, request: Request) -> Response:
    from engine.web.app import _agent_write, _posted

    posted = await _posted(console, request)
    who, _, refused = await _agent_write(
        console,
        request,
        posted,
        lambda s, me: end_pause(s, me.login, at=posted.at, reason=RESUMED, by=me.login),
    )
    if refused is not None:
        return refused
    return console.finish(who, RedirectResponse("/agent", status_code=303))
