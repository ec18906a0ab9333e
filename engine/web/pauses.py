"""Pause and resume on the agent's page (POST /agent/pause, /agent/resume), on the same
functions as `campaign agents pause/resume` (engine/calls/pauses.py). While paused the page
shows "paused: break since 10:02" and a Resume button instead of Next call; Next call (the
engine's claim) ends the pause too. Each answers with the agent's page, as GET /agent shows
it (#19)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from engine.calls.pauses import RESUMED, end_pause, pause_codes, start_pause
from engine.clock import ensure_utc
from engine.errors import EngineError

if TYPE_CHECKING:
    from engine.web.app import Console
    from engine.web.pages import WorkingAgent


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
    """The agent paused, answered with their page (GET /agent's, read in the pause's
    transaction): one request, not a redirect and a second one (#19)."""
    # the agent handlers' checks and answers
    from engine.web.app import _agent_write, _and_page, _page_or_redirect, _posted, agent_home

    posted = await _posted(console, request)
    codes = pause_codes(console.app.settings)
    code = posted.form.get("code", "")

    def pause(s: Session, me: WorkingAgent) -> PauseView | None:
        row = start_pause(s, me.login, code, codes=codes, at=posted.at, by=me.login)
        return pause_view(row.code, row.started_at, me.zone)

    try:
        who, done, refused = await _agent_write(
            console,
            request,
            posted,
            _and_page(console.app.settings, posted.at, pause, paused=lambda _me, view: view),
        )
    except EngineError as exc:
        return await agent_home(console, request, error=str(exc), status=409)
    if refused is not None:
        return refused
    assert done is not None
    return _page_or_redirect(console, who, done[1], posted.at, "/agent")


async def agent_resume(console: Console, request: Request) -> Response:
    """The agent back from their pause, answered with their page (GET /agent's, read in the
    resume's transaction): one request, not a redirect and a second one (#19)."""
    from engine.web.app import _agent_write, _and_page, _page_or_redirect, _posted

    posted = await _posted(console, request)

    def resume(s: Session, me: WorkingAgent) -> None:
        end_pause(s, me.login, at=posted.at, reason=RESUMED, by=me.login)

    who, done, refused = await _agent_write(
        console,
        request,
        posted,
        _and_page(console.app.settings, posted.at, resume, paused=lambda _me, _done: None),
    )
    if refused is not None:
        return refused
    assert done is not None
    return _page_or_redirect(console, who, done[1], posted.at, "/agent")
