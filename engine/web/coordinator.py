"""The coordinator's switches in the console: runs (`/runs`) with pause, resume and cancel,
and the outbox's messages of unknown fate (`/outbox/unknown`) with the resolve actions.

    GET  /runs                         runs with their status and counts
    POST /runs/ID/pause, /runs/ID/resume
    GET  /runs/ID/cancel               the confirmation step; POST it to cancel for good
    GET  /outbox/unknown?run=&after=   messages of unknown fate, a page at a time
    POST /outbox/unknown/resolve       one message: sent, failed or resend
    POST /outbox/unknown/resolve-run   every unknown message of one run (confirmed)

The same engine functions as `campaign runs pause|resume|cancel` and `campaign outbox
resolve` do the work, with the same refusals (shown on the page, nothing changed). Each change
is written to the console's audit in the same transaction: who, when, what. Supervisors and
managers read these pages; only coordinators act. Launching stays a CLI act (campaign files
are reviewed)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from engine.db.models import ConsoleAuditEvent
from engine.errors import EngineError, InputError
from engine.runs import cancel_run, list_runs, pause_run, resume_run, show_run
from engine.sending.outbox import count_unknown, resolve, resolve_many, unknown_messages
from engine.web import audit
from engine.web.auth import Visitor, checked_form, client_address, guard, visitor

if TYPE_CHECKING:
    from engine.web.app import Console

READ_ROLES = ("supervisor", "manager", "coordinator")
ACT_ROLES = ("coordinator",)
PAGE = 50  # unknown messages per page
RESOLVE_ACTIONS = ("sent", "failed", "resend")

# Audit events of the coordinator's actions (engine/web/audit.py keeps the sign-in ones).
RUN_PAUSED = "run_paused"
RUN_RESUMED = "run_resumed"
RUN_CANCELLED = "run_cancelled"
OUTBOX_RESOLVED = "outbox_resolved"
OUTBOX_RESOLVED_RUN = "outbox_resolved_run"


def _int(raw: str | None) -> int | None:
    raw = (raw or "").strip()
    return int(raw) if raw.isdigit() else None


def _text(form: dict[str, str], name: str) -> str | None:
    return form.get(name, "").strip()[:500] or None


async def _acting(
    console: Console, request: Request
) -> tuple[Visitor, dict[str, str], Response | None]:
    """A coordinator's POST with the session's CSRF token, or the refusal."""
    who = await visitor(console, request)
    refused = guard(console, who, request, *ACT_ROLES)
    if refused is not None:
        return who, {}, refused
    form, refused = await checked_form(console, who, request)
    return who, form, refused


def _audited(
    console: Console, who: Visitor, request: Request, event: str, work: Callable[[Session], str]
) -> int:
    """Run ``work`` (which returns what it did, in words) and audit it, in one transaction:
    a refusal rolls both back. The audit row's id, for the page that says it was done."""
    assert who.user is not None
    login = who.user.login
    at = console.app.clock.now()

    def unit(session: Session) -> int:
        done = work(session)
        audit.record(
            session,
            event,
            login,
            at=at,
            address=client_address(request),
            actor=login,
            detail=done,
        )
        return int(
            session.scalar(
                select(func.max(ConsoleAuditEvent.id)).where(
                    ConsoleAuditEvent.login == login, ConsoleAuditEvent.event == event
                )
            )
            or 0
        )

    return console.write(unit)


def _actions(session: Session, events: tuple[str, ...], done: int | None) -> dict[str, Any]:
    """The latest coordinator actions of these kinds, and the one just done (by its id)."""
    recent = list(
        session.scalars(
            select(ConsoleAuditEvent)
            .where(ConsoleAuditEvent.event.in_(events))
            .order_by(ConsoleAuditEvent.at.desc(), ConsoleAuditEvent.id.desc())
            .limit(10)
        )
    )
    just_done = session.get(ConsoleAuditEvent, done) if done is not None else None
    if just_done is not None and just_done.event not in events:
        just_done = None
    return {"recent": recent, "just_done": just_done}


def _done(page: str, audit_id: int, **query: Any) -> Response:
    params = {k: v for k, v in query.items() if v is not None}
    params["done"] = audit_id
    return RedirectResponse(f"{page}?{urlencode(params)}", status_code=303)


# --------------------------------------------------------------------------- runs

RUN_EVENTS = (RUN_PAUSED, RUN_RESUMED, RUN_CANCELLED)


async def runs_page(console: Console, request: Request, **extra: Any) -> Response:
    who = await visitor(console, request)
    refused = guard(console, who, request, *READ_ROLES)
    if refused is not None:
        return refused
    assert who.user is not None
    campaign = request.query_params.get("campaign", "").strip() or None
    done = _int(request.query_params.get("done"))

    def read(session: Session) -> dict[str, Any]:
        return {
            "runs": list_runs(session, campaign=campaign, limit=200),
            **_actions(session, RUN_EVENTS, done),
        }

    data = await run_in_threadpool(console.read, read)
    status = extra.pop("status", 200)
    return console.page(
        who,
        "runs.html",
        status=status,
        campaign=campaign or "",
        can_act=who.user.role in ACT_ROLES,
        **data,
        **extra,
    )


def _change_words(change: Any) -> str:
    """What `campaign runs pause|resume|cancel` prints about the change, with its reason."""
    return str(change.words(with_reason=True))


RunAction = Callable[[Session, int, datetime, str | None], Any]


async def _run_action(
    console: Console, request: Request, event: str, act: RunAction, *, confirm: bool = False
) -> Response:
    who, form, refused = await _acting(console, request)
    if refused is not None:
        return refused
    if confirm and form.get("confirm") != "yes":
        # Only the confirmation page's form says yes; anything else is shown that page.
        return await run_cancel_confirm(console, request)
    run_id = _int(request.path_params.get("run"))
    if run_id is None:
        return await runs_page(console, request, error="which run? give a run id", status=400)
    at = console.app.clock.now()
    reason = _text(form, "reason")

    def work(session: Session) -> str:
        return _change_words(act(session, run_id, at, reason))

    try:
        audit_id = await run_in_threadpool(_audited, console, who, request, event, work)
    except EngineError as exc:
        # Refused as `campaign runs` refuses; nothing changed (the transaction rolled back).
        return await runs_page(console, request, error=str(exc), status=409)
    return console.finish(who, _done("/runs", audit_id))


async def run_pause(console: Console, request: Request) -> Response:
    return await _run_action(
        console,
        request,
        RUN_PAUSED,
        lambda s, run, at, reason: pause_run(s, run, at=at, reason=reason),
    )


async def run_resume(console: Console, request: Request) -> Response:
    return await _run_action(
        console, request, RUN_RESUMED, lambda s, run, at, _reason: resume_run(s, run, at=at)
    )


async def run_cancel_confirm(console: Console, request: Request) -> Response:
    """The confirmation step of a cancel: what it does, a reason, one button."""
    who = await visitor(console, request)
    refused = guard(console, who, request, *ACT_ROLES)
    if refused is not None:
        return refused
    run_id = _int(request.path_params.get("run"))
    try:
        if run_id is None:
            raise InputError("which run? give a run id")
        run = await run_in_threadpool(console.read, lambda s: show_run(s, run_id))
    except EngineError as exc:
        return console.page(who, "message.html", status=404, title="No such run", message=str(exc))
    return console.page(who, "run_cancel.html", run=run)


async def run_cancel(console: Console, request: Request) -> Response:
    return await _run_action(
        console,
        request,
        RUN_CANCELLED,
        lambda s, run, at, reason: cancel_run(s, run, at=at, reason=reason),
        confirm=True,
    )


# --------------------------------------------------------------------------- unknown outbox

OUTBOX_EVENTS = (OUTBOX_RESOLVED, OUTBOX_RESOLVED_RUN)


async def unknown_page(console: Console, request: Request, **extra: Any) -> Response:
    who = await visitor(console, request)
    refused = guard(console, who, request, *READ_ROLES)
    if refused is not None:
        return refused
    assert who.user is not None
    # After a refused POST the page shows the run the form was about.
    run_id = extra.pop("run_id", None) or _int(request.query_params.get("run"))
    after = _int(request.query_params.get("after"))
    done = _int(request.query_params.get("done"))

    def read(session: Session) -> dict[str, Any]:
        return {
            "messages": unknown_messages(session, limit=PAGE, after=after, run_id=run_id),
            "total": count_unknown(session, run_id=run_id),
            **_actions(session, OUTBOX_EVENTS, done),
        }

    data = await run_in_threadpool(console.read, read)
    messages = data["messages"]
    next_after = messages[-1].id if len(messages) == PAGE else None
    status = extra.pop("status", 200)
    return console.page(
        who,
        "outbox_unknown.html",
        status=status,
        run_id=run_id,
        after=after,
        next_after=next_after,
        actions=RESOLVE_ACTIONS,
        can_act=who.user.role in ACT_ROLES,
        **data,
        **extra,
    )


def _action(form: dict[str, str]) -> str:
    action = form.get("action", "")
    if action not in RESOLVE_ACTIONS:
        # The CLI's words when no --sent/--resend/--failed is given.
        raise InputError("say how: sent, resend or failed")
    return action


async def resolve_one(console: Console, request: Request) -> Response:
    who, form, refused = await _acting(console, request)
    if refused is not None:
        return refused
    at = console.app.clock.now()
    note = _text(form, "note")
    message = form.get("message", "").strip()
    back = {"run": _int(form.get("run")), "after": _int(form.get("after"))}

    def work(session: Session) -> str:
        if not message:
            raise InputError("which? give a message id")
        result = resolve(session, message, _action(form), at=at, note=note)  # type: ignore[arg-type]
        return f"outbox message {result.id}: {result.before} -> {result.after}" + (
            f" ({note})" if note else ""
        )

    try:
        audit_id = await run_in_threadpool(_audited, console, who, request, OUTBOX_RESOLVED, work)
    except EngineError as exc:
        return await unknown_page(console, request, error=str(exc), status=409, run_id=back["run"])
    return console.finish(who, _done("/outbox/unknown", audit_id, **back))


async def resolve_run(console: Console, request: Request) -> Response:
    """Every unknown message of one run at once, as `outbox resolve --run R` does; the form
    must say it is meant (a checkbox)."""
    who, form, refused = await _acting(console, request)
    if refused is not None:
        return refused
    at = console.app.clock.now()
    note = _text(form, "note")
    run_id = _int(form.get("run"))

    def work(session: Session) -> str:
        if run_id is None:
            raise InputError("which run? give a run id")
        action = _action(form)
        if form.get("confirm") != "yes":
            raise InputError(
                f"tick the box to confirm: every unknown message of run {run_id} -> {action}"
            )
        many = resolve_many(session, action, at=at, run_id=run_id, note=note)  # type: ignore[arg-type]
        return f"run {run_id}: {many.count:,} message(s) of unknown fate -> {many.after}" + (
            f" ({note})" if note else ""
        )

    try:
        audit_id = await run_in_threadpool(
            _audited, console, who, request, OUTBOX_RESOLVED_RUN, work
        )
    except EngineError as exc:
        return await unknown_page(console, request, error=str(exc), status=409, run_id=run_id)
    return console.finish(who, _done("/outbox/unknown", audit_id, run=run_id))
