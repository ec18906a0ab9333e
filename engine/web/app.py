"""The console's routes, mounted into `campaign serve` (engine/webhooks/app.py):

    GET  /login, POST /login, POST /logout      sign in and out (engine/web/auth.py)
    GET  /agent                                 the agent's call screen
    POST /agent/next, /agent/release, /agent/log
    POST /agent/verify                          identity verified (engine/web/verify.py)
    POST /agent/pause, /agent/resume            pause codes (engine/web/pauses.py)
    GET  /floor                                 the wallboard (supervisor, manager, coordinator)
    GET  /reports, /reports/NAME[.csv|.html]    live reports (engine/web/reports.py)
    GET  /runs, /outbox/unknown (+ POSTs)      coordinator actions (engine/web/coordinator.py)
    GET  /console/static/...                    the stylesheet and script (package data)

Handlers are thin: who is asking (auth), one engine call in a worker thread, one template."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Connection
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from engine.app import App
from engine.calls.claiming import take_next_as
from engine.calls.log import LogResult
from engine.calls.tasks import DEFAULT_LEASE, Claim
from engine.calls.verification import NotYourTask
from engine.consent.unsubscribe import signing_key
from engine.db.session import writing
from engine.errors import EngineError
from engine.settings import Settings
from engine.web import auth, coordinator, floor, pages, pauses, reports, verify
from engine.web.auth import (
    AGENT_ROLES,
    FormTooLarge,
    SignedIn,
    Visitor,
    cookie_session,
    csrf_refused,
    guard,
    load_user,
    read_form,
    visitor,
    visitor_of,
)
from engine.web.pauses import PauseView
from engine.web.sessions import CSRF_FIELD, ConsoleSession, SessionCodec

HERE = Path(__file__).parent
T = TypeVar("T")
log = logging.getLogger(__name__)
# No page of the console is cached, framed by another site or sniffed as another type; only
# our own script and stylesheet run.
HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
}


class Console:
    """What the handlers share: the engine, the templates and the session codec."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
            # The templates are package data, changed only by a new release: no stat of each
            # file on every page.
            auto_reload=False,
        )
        self._codec: SessionCodec | None = None
        self._codec_lock = asyncio.Lock()

    async def codec(self) -> SessionCodec:
        if self._codec is None:
            async with self._codec_lock:
                if self._codec is None:
                    key = await run_in_threadpool(
                        self.write, lambda s: signing_key(s, self.app.settings)
                    )
                    secure = self.app.settings.public_url.startswith("https://")
                    self._codec = SessionCodec(key, secure=secure)
        return self._codec

    def read(self, work: Callable[[Session], T]) -> T:
        with self.app.sessions() as session:
            return work(session)

    def write(self, work: Callable[[Session], T]) -> T:
        # SQLite: the writer from the first statement, as the CLI's writing commands are, so a
        # form that reads then writes waits for a running dispatcher instead of failing.
        with writing(self.app.sessions) as session:
            return work(session)

    def finish(self, who: Visitor, response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if who.set_cookie and self._codec is not None:
            response.set_cookie(**self._codec.cookie_header(who.session))
        return response

    def page(self, who: Visitor, template: str, *, status: int = 200, **context: Any) -> Response:
        text = self.env.get_template(template).render(
            user=who.user, csrf=who.session.csrf, csrf_field=CSRF_FIELD, **context
        )
        return self.finish(who, HTMLResponse(text, status_code=status))

    def forbidden(self, who: Visitor, message: str, *, status: int = 403) -> Response:
        return self.page(who, "message.html", status=status, title="Not allowed", message=message)


# --------------------------------------------------------------------------- agent


def _agent_refusal(console: Console, who: Visitor, request: Request) -> Response | None:
    """None when ``who`` is a working agent, else the answer (pages.agent_home reads the page
    under the same conditions)."""
    refused = guard(console, who, request, *AGENT_ROLES)
    if refused is None and who.user is not None and who.user.agent is None:
        refused = console.forbidden(
            who, "Your agent row is disabled or missing; ask a supervisor (`campaign agents`)."
        )
    return refused


async def agent_home(console: Console, request: Request, **extra: Any) -> Response:
    at = console.app.clock.now()
    value = await cookie_session(console, request, at)
    seq = request.query_params.get("logged", "")
    data = None
    if value is None:
        who = visitor_of(None, None, at)
    else:
        # Who is asking and their page in one worker thread and one session (one pool
        # checkout); the page is read only when the user may see it.
        user, data = await run_in_threadpool(
            console.read,
            lambda s: pages.agent_home(
                s,
                console.app.settings,
                value,
                at=at,
                logged_seq=int(seq) if seq.isdigit() else None,
            ),
        )
        who = visitor_of(value, user, at)
    refused = _agent_refusal(console, who, request)
    if refused is not None:
        return refused
    assert who.user is not None and data is not None
    return _agent_sheet(
        console,
        who,
        data,
        at,
        nothing=request.query_params.get("nothing") == "1",
        released=request.query_params.get("released", ""),
        **extra,
    )


def _agent_sheet(
    console: Console,
    who: Visitor,
    data: pages.AgentPage,
    at: datetime,
    *,
    status: int = 200,
    address: str = "/agent",
    **extra: Any,
) -> Response:
    """The agent's page (agent.html) of ``data``, read at ``at``: the page of /agent, whichever
    request answers with it (the browser shows ``address``: console.js)."""
    assert who.user is not None
    return console.page(
        who,
        "agent.html",
        status=status,
        data=data,
        now=at,
        agent_zone=who.user.zone,
        address=address,
        **extra,
    )


async def agent_next(console: Console, request: Request) -> Response:
    """Next call: the claim, and the call sheet of the task claimed in the same answer (the
    page GET /agent shows, read in the claim's transaction): one request, not a redirect and
    a second one (#19). Nothing claimed: back to GET /agent?nothing=1."""
    posted = await _posted(console, request)
    value, settings = posted.value, console.app.settings
    user: SignedIn | None = None
    served: Claim | None = None
    shown: tuple[pages.AgentPage, datetime] | None = None
    if posted.passes_cookie_checks():
        assert value is not None

        def read(connection: Connection) -> tuple[SignedIn | None, pages.WorkingAgent | None]:
            # The page's statement of the user: the page reads none of it again.
            return pages.page_user(connection, settings, value)

        def show(
            connection: Connection,
            found: tuple[SignedIn | None, pages.WorkingAgent | None],
            at: datetime,
        ) -> tuple[pages.AgentPage, datetime]:
            me = found[1]
            assert me is not None  # a claim is made only for a working agent
            # An ORM session on the claim's connection joins its transaction (neither
            # commits nor rolls it back). Asking for the next call ended any pause
            # (take_next): the page shows none.
            with console.app.sessions(bind=connection) as session:
                page = pages.agent_page(
                    session, settings, replace(me, pause=None), at=at, logged=None
                )
            return page, at  # read at the claim's instant (a retried claim's is later)

        try:
            # Who is asking, their claim and its page on one connection (#19).
            (user, _me), served, shown = await run_in_threadpool(
                take_next_as, console.app, read, _agent_login, show, lease=DEFAULT_LEASE
            )
        except EngineError as exc:
            return await agent_home(console, request, error=str(exc), status=409)
    elif value is not None:
        user = await run_in_threadpool(
            console.read, lambda s: load_user(s, value, settings.default_timezone)
        )
    who = visitor_of(value, user, posted.at)
    refused = _post_refusal(console, who, request, posted)
    if refused is not None:
        return refused
    if shown is not None:
        return _agent_sheet(console, who, *shown)
    target = "/agent" if served is not None else "/agent?nothing=1"
    return console.finish(who, RedirectResponse(target, status_code=303))


def _agent_login(found: tuple[SignedIn | None, pages.WorkingAgent | None]) -> str | None:
    """The login of the working agent read, None when the user may not work calls."""
    return found[1].login if found[1] is not None else None


async def agent_release(console: Console, request: Request) -> Response:
    """The claim released, answered with the agent's page (GET /agent?released=N's, read in
    the release's transaction): one request, not a redirect and a second one (#19)."""
    posted = await _posted(console, request)
    settings = console.app.settings

    def release(s: Session, me: pages.WorkingAgent) -> int:
        return pages.release_own(s, posted.form, agent=me.login, at=posted.at)

    try:
        who, done, refused = await _agent_write(
            console, request, posted, _and_page(settings, posted.at, release)
        )
    except EngineError as exc:
        return await agent_home(console, request, error=str(exc), status=403)
    if refused is not None:
        return refused
    assert done is not None
    task_id, page = done
    return _page_or_redirect(
        console, who, page, posted.at, f"/agent?released={task_id}", released=str(task_id)
    )


async def agent_log(console: Console, request: Request) -> Response:
    """The call logged, answered with the agent's page (GET /agent?logged=N's, read in the
    log's transaction after the log): one request, not a redirect and a second one (#19)."""
    posted = await _posted(console, request)
    settings = console.app.settings

    def log(s: Session, me: pages.WorkingAgent) -> LogResult:
        return pages.log_from_form(
            s, settings, posted.form, agent=me.login, zone=me.zone, at=posted.at
        )

    try:
        who, done, refused = await _agent_write(
            console, request, posted, _and_page(settings, posted.at, log, pages.logged_of)
        )
    except NotYourTask as exc:
        return await agent_home(console, request, error=str(exc), status=403)
    except EngineError as exc:
        # Refused exactly as `calls log` refuses; the transaction rolled back, and the page
        # comes back with what was typed.
        return await agent_home(console, request, error=str(exc), typed=posted.form, status=422)
    if refused is not None:
        return refused
    assert done is not None
    result, page = done
    return _page_or_redirect(console, who, page, posted.at, f"/agent?logged={result.seq}")


def _and_page(
    settings: Settings,
    at: datetime,
    work: Callable[[Session, pages.WorkingAgent], T],
    logged: Callable[[T], dict[str, Any] | None] = lambda _done: None,
    *,
    paused: Callable[[pages.WorkingAgent, T], PauseView | None] = lambda me, _done: me.pause,
) -> Callable[[Session, pages.WorkingAgent], tuple[T, pages.AgentPage | None]]:
    """``work`` of an agent's form, then the agent's page read in its transaction, so that
    the form answers with the page (#19). ``logged``: the page's "logged" line of what
    ``work`` did; ``paused``: the agent's pause once ``work`` is done (the one read with the
    agent, unless ``work`` started or ended it). None for the page when it cannot be read:
    that never undoes the form's work (the answer is then the redirect, whose GET shows what
    went wrong). Any failure of the page counts, not only a refusal: a call logged is not
    lost to a fault in showing the next page (a script that does not render, say), which is
    logged. (A database error aborts a PostgreSQL transaction: that one fails the form's
    commit, as it would the form alone.)"""

    def both(s: Session, me: pages.WorkingAgent) -> tuple[T, pages.AgentPage | None]:
        done = work(s, me)
        try:
            shown = replace(me, pause=paused(me, done))
            return done, pages.agent_page(s, settings, shown, at=at, logged=logged(done))
        except EngineError:
            return done, None
        except Exception:
            log.exception("the agent page after %s's form could not be read", me.login)
            return done, None

    return both


def _page_or_redirect(
    console: Console,
    who: Visitor,
    page: pages.AgentPage | None,
    at: datetime,
    address: str,
    **extra: Any,
) -> Response:
    """The agent's page as the answer to their form, shown at ``address`` (what GET of it
    shows); without the page, the 303 to that address."""
    if page is None:
        return console.finish(who, RedirectResponse(address, status_code=303))
    return _agent_sheet(console, who, page, at, address=address, **extra)


@dataclass(frozen=True)
class _Posted:
    """An agent's POST as far as it is read without the database."""

    at: datetime
    value: ConsoleSession | None  # the cookie's session
    form: dict[str, str]
    too_large: str | None  # the refusal of a form over the size limit

    def passes_cookie_checks(self) -> bool:
        """Signed in, within the size limit and with the session's CSRF token: the checks
        that need no database."""
        return (
            self.value is not None
            and self.value.user_id is not None
            and self.too_large is None
            and self.value.valid_csrf(self.form.get(CSRF_FIELD))
        )


async def _posted(console: Console, request: Request) -> _Posted:
    at = console.app.clock.now()
    value = await cookie_session(console, request, at)
    try:
        return _Posted(at, value, await read_form(request), None)
    except FormTooLarge as exc:
        return _Posted(at, value, {}, str(exc))


async def _agent_write(
    console: Console,
    request: Request,
    posted: _Posted,
    work: Callable[[Session, pages.WorkingAgent], T],
) -> tuple[Visitor, T | None, Response | None]:
    """An agent's form that writes, with who is asking read in its writing session (one
    worker thread and one pool checkout, not two). ``work`` runs only when the checks of
    :func:`_post_refusal` pass, and their refusal is the same: sign in, role, agent row, form
    size, CSRF. ``work`` gets the session and the agent as their page reads them (the
    statement of the user is the page's: a form answered with the page reads it once). A form
    that fails a check needing no database is refused after a read, taking no write lock."""
    value, settings = posted.value, console.app.settings
    default_zone = settings.default_timezone

    def unit(s: Session) -> tuple[SignedIn | None, T | None]:
        assert value is not None
        user, me = pages.page_user(s, settings, value)
        if me is None:
            return user, None
        return user, work(s, me)

    user: SignedIn | None = None
    result: T | None = None
    if posted.passes_cookie_checks():
        user, result = await run_in_threadpool(console.write, unit)
    elif value is not None:
        user = await run_in_threadpool(console.read, lambda s: load_user(s, value, default_zone))
    who = visitor_of(value, user, posted.at)
    return who, result, _post_refusal(console, who, request, posted)


def _post_refusal(
    console: Console, who: Visitor, request: Request, posted: _Posted
) -> Response | None:
    """The refusal of an agent's form, in this order: sign in, role, agent row, form size,
    CSRF (the first four need no database)."""
    refused = _agent_refusal(console, who, request)
    if refused is None and posted.too_large is not None:
        refused = console.forbidden(who, posted.too_large, status=413)
    if refused is None and csrf_refused(who, posted.form):
        message = "The form expired or came from another site; reload the page."
        refused = console.forbidden(who, message)
    return refused


# --------------------------------------------------------------------------- routes


def console_routes(app: App) -> list[BaseRoute]:
    console = Console(app)

    def bind(handler: Callable[..., Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return await handler(console, request)

        return endpoint

    return [
        Route("/", bind(lambda c, r: _root(c, r)), methods=["GET"]),
        Route("/login", bind(auth.login_page), methods=["GET"]),
        Route("/login", bind(auth.login_submit), methods=["POST"]),
        Route("/logout", bind(auth.logout_submit), methods=["POST"]),
        Route("/agent", bind(agent_home), methods=["GET"]),
        Route("/agent/next", bind(agent_next), methods=["POST"]),
        Route("/agent/release", bind(agent_release), methods=["POST"]),
        Route("/agent/log", bind(agent_log), methods=["POST"]),
        Route("/agent/verify", bind(verify.agent_verify), methods=["POST"]),
        Route("/agent/pause", bind(pauses.agent_pause), methods=["POST"]),
        Route("/agent/resume", bind(pauses.agent_resume), methods=["POST"]),
        Route("/floor", bind(floor.floor_page), methods=["GET"]),
        Route("/reports", bind(reports.reports_index), methods=["GET"]),
        Route("/reports/{name}.csv", bind(lambda c, r: reports.report_file(c, r, "csv"))),
        Route("/reports/{name}.html", bind(lambda c, r: reports.report_file(c, r, "html"))),
        Route("/reports/{name}", bind(reports.report_page), methods=["GET"]),
        Route("/runs", bind(coordinator.runs_page), methods=["GET"]),
        Route("/runs/{run}/pause", bind(coordinator.run_pause), methods=["POST"]),
        Route("/runs/{run}/resume", bind(coordinator.run_resume), methods=["POST"]),
        Route("/runs/{run}/cancel", bind(coordinator.run_cancel_confirm), methods=["GET"]),
        Route("/runs/{run}/cancel", bind(coordinator.run_cancel), methods=["POST"]),
        Route("/outbox/unknown", bind(coordinator.unknown_page), methods=["GET"]),
        Route("/outbox/unknown/resolve", bind(coordinator.resolve_one), methods=["POST"]),
        Route("/outbox/unknown/resolve-run", bind(coordinator.resolve_run), methods=["POST"]),
        Mount("/console/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]


async def _root(console: Console, request: Request) -> Response:
    who = await visitor(console, request)
    return console.finish(who, RedirectResponse(who.home(), status_code=303))
