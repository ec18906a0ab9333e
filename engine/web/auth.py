"""Who is asking: the session cookie checked against the database on every request, the
sign-in and sign-out handlers, the role guard and the CSRF check of every form."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from engine.calls.pauses import SIGNED_OUT, end_pause
from engine.db.models import Agent, ConsoleUser
from engine.web import audit
from engine.web.sessions import COOKIE, CSRF_FIELD, ConsoleSession, new_session
from engine.web.users import SignInRefused, sign_in

if TYPE_CHECKING:
    from engine.web.app import Console

MAX_FORM_BODY = 64 * 1024
MAX_FORM_FIELDS = 200
AGENT_ROLES = ("agent",)  # the console roles with a call screen
HOME = {"agent": "/agent"}  # other roles land on the wallboard
FLOOR = "/floor"


@dataclass(frozen=True)
class SignedIn:
    user_id: int
    login: str
    role: str
    agent: str | None  # the linked agent's login
    zone: str  # the agent's zone, else the program default


@dataclass
class Visitor:
    session: ConsoleSession
    user: SignedIn | None
    set_cookie: bool  # the browser's cookie must be (re)written

    def home(self) -> str:
        return HOME.get(self.user.role, FLOOR) if self.user else "/login"


# The user and their agent in one statement: every request of the console asks this. Built
# once, the user bound when it runs.
USER_QUERY = (
    select(
        ConsoleUser.id,
        ConsoleUser.login,
        ConsoleUser.role,
        ConsoleUser.active,
        ConsoleUser.session_version,
        Agent.login,
        Agent.active,
        Agent.timezone,
    )
    .outerjoin(Agent, Agent.id == ConsoleUser.agent_id)
    .where(ConsoleUser.id == bindparam("user_id"))
)


def signed_in(
    row: Sequence[Any] | None, value: ConsoleSession, default_zone: str
) -> SignedIn | None:
    """The user of a :data:`USER_QUERY` row (its first columns), or None when the cookie is no
    longer theirs."""
    if row is None:
        return None
    user_id, login, role, active, version, agent_login, agent_active, agent_zone = row[:8]
    # Disabled, new password, new role: the version moved on and this cookie is dead.
    if not active or version != value.version:
        return None
    return SignedIn(
        user_id,
        login,
        role,
        agent_login if agent_login is not None and agent_active else None,
        agent_zone if agent_login is not None else default_zone,
    )


def load_user(session: Session, value: ConsoleSession, default_zone: str) -> SignedIn | None:
    if value.user_id is None:
        return None
    row = session.execute(USER_QUERY, {"user_id": value.user_id}).first()
    return signed_in(row, value, default_zone)


async def cookie_session(console: Console, request: Request, at: datetime) -> ConsoleSession | None:
    """The session the cookie holds, or None when it is missing, forged or expired."""
    codec = await console.codec()
    return codec.loads(request.cookies.get(COOKIE), at=at)


def visitor_of(value: ConsoleSession | None, user: SignedIn | None, at: datetime) -> Visitor:
    """The visitor of a cookie's session and the user it names (read by the caller)."""
    if value is None:
        return Visitor(new_session(at), None, True)
    if value.user_id is not None and user is None:
        return Visitor(new_session(at), None, True)  # signed out from elsewhere
    return Visitor(value, user, False)


async def visitor(console: Console, request: Request) -> Visitor:
    at = console.app.clock.now()
    value = await cookie_session(console, request, at)
    if value is None:
        return visitor_of(None, None, at)
    user = await run_in_threadpool(
        console.read, lambda s: load_user(s, value, console.app.settings.default_timezone)
    )
    return visitor_of(value, user, at)


async def read_form(request: Request) -> dict[str, str]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BODY:
            raise FormTooLarge("the form is too large")
    pairs = parse_qsl(
        body.decode("utf-8", errors="replace"),
        keep_blank_values=True,
        max_num_fields=MAX_FORM_FIELDS,
    )
    return dict(pairs)


class FormTooLarge(Exception):
    pass


def csrf_refused(who: Visitor, form: dict[str, str]) -> bool:
    return not who.session.valid_csrf(form.get(CSRF_FIELD))


async def checked_form(
    console: Console, who: Visitor, request: Request
) -> tuple[dict[str, str], Response | None]:
    """A POST's form, or the refusal: too large (413) or without the session's CSRF token."""
    try:
        form = await read_form(request)
    except FormTooLarge as exc:
        return {}, console.forbidden(who, str(exc), status=413)
    if csrf_refused(who, form):
        message = "The form expired or came from another site; reload the page."
        return form, console.forbidden(who, message)
    return form, None


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def login_page(console: Console, request: Request) -> Response:
    who = await visitor(console, request)
    if who.user is not None:
        return console.finish(who, RedirectResponse(who.home(), status_code=303))
    return console.page(who, "login.html", login="", error=None)


async def login_submit(console: Console, request: Request) -> Response:
    who = await visitor(console, request)
    form = await read_form(request)
    if csrf_refused(who, form):
        return console.forbidden(who, "The sign-in form expired; reload the page and try again.")
    login = form.get("login", "")
    password = form.get("password", "")
    at = console.app.clock.now()
    address = client_address(request)

    def work(session: Session) -> ConsoleUser | str:
        # A refusal is returned, not raised, so the failed sign-in is committed to the audit.
        try:
            return sign_in(session, login, password, address=address, at=at)
        except SignInRefused as exc:
            return str(exc)

    outcome = await run_in_threadpool(console.write, work)
    if isinstance(outcome, str):
        return console.page(who, "login.html", status=401, login=login, error=outcome)
    who.session = who.session.signed_in(outcome.id, outcome.session_version, at)
    who.set_cookie = True
    target = HOME.get(outcome.role, FLOOR)
    return console.finish(who, RedirectResponse(target, status_code=303))


async def logout_submit(console: Console, request: Request) -> Response:
    who = await visitor(console, request)
    form = await read_form(request)
    if csrf_refused(who, form):
        return console.forbidden(who, "The form expired; reload the page and try again.")
    if who.user is not None:
        user = who.user
        at = console.app.clock.now()
        address = client_address(request)

        def sign_out(s: Session) -> None:
            audit.record(s, audit.SIGN_OUT, user.login, at=at, address=address)
            if user.agent is not None:  # signing out ends a pause (engine/calls/pauses.py)
                end_pause(s, user.agent, at=at, reason=SIGNED_OUT, by=user.login)

        await run_in_threadpool(console.write, sign_out)
    who.session, who.user, who.set_cookie = new_session(console.app.clock.now()), None, True
    return console.finish(who, RedirectResponse("/login", status_code=303))


def guard(console: Console, who: Visitor, request: Request, *roles: str) -> Response | None:
    """None when ``who`` may see this page, else the answer: sign in first, or 403."""
    if who.user is None:
        if request.method == "GET":
            return console.finish(who, RedirectResponse("/login", status_code=303))
        return console.forbidden(who, "Sign in first.", status=401)
    if who.user.role not in roles:
        return console.forbidden(
            who, f"This page is for {' and '.join(roles)} users; you are {who.user.role}."
        )
    return None


def html(text: str, status: int) -> HTMLResponse:
    return HTMLResponse(text, status_code=status)
