"""The call sheet's "Verified" action (POST /agent/verify): the agent records on their own
live claim that the member's identity was verified, and the page shows the full account from
then on (engine/calls/verification.py). Audited in the console's audit table; another agent's
task, or an expired claim, is refused (403) and nothing is recorded."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from engine.calls.verification import NotYourTask, verify_claim
from engine.errors import EngineError, InputError
from engine.web.auth import client_address

if TYPE_CHECKING:
    from engine.web.app import Console
    from engine.web.pages import WorkingAgent


def verify_own(
    session: Session, form: dict[str, str], *, agent: str, at: datetime, address: str | None
) -> int:
    try:
        task_id = int(form.get("task_id", ""))
    except ValueError:
        raise InputError("the form names no task; reload the page") from None
    verify_claim(session, task_id, agent, at=at, address=address)
    return task_id


async def agent_verify(console: Console, request: Request) -> Response:
    """Verified, answered with the agent's page (GET /agent's, its full account read in the
    verification's transaction): one request, not a redirect and a second one (#19)."""
    # the agent handlers' checks and answers
    from engine.web.app import _agent_write, _and_page, _page_or_redirect, _posted, agent_home

    posted = await _posted(console, request)
    address = client_address(request)

    def verify(s: Session, me: WorkingAgent) -> int:
        return verify_own(s, posted.form, agent=me.login, at=posted.at, address=address)

    try:
        who, done, refused = await _agent_write(
            console, request, posted, _and_page(console.app.settings, posted.at, verify)
        )
    except NotYourTask as exc:
        return await agent_home(console, request, error=str(exc), status=403)
    except EngineError as exc:
        return await agent_home(console, request, error=str(exc), status=422)
    if refused is not None:
        return refused
    assert done is not None
    return _page_or_redirect(console, who, done[1], posted.at, "/agent")
