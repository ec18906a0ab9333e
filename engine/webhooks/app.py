"""The ASGI application behind ``campaign serve`` (Starlette under uvicorn).

    GET  /healthz                    the database answers: 200, else 503
    GET  /metrics                    Prometheus metrics (engine/metrics; webhooks/observed.py)
    POST /webhooks/sendgrid          SendGrid signed Event Webhook (ECDSA)
    POST /webhooks/twilio/status     Twilio status callback (?m=<our message id>)
    POST /webhooks/twilio/inbound    inbound SMS: STOP / START / HELP / replies (TwiML answer)
    POST /webhooks/events            activity events from a program's own systems (Bearer token)
    GET  /u/{token}                  unsubscribe confirmation page (changes nothing)
    POST /u/{token}                  unsubscribe, also RFC 8058 one-click
    /login, /agent, /floor ...       the browser console (engine/web/app.py)

Every request is answered 2xx, 4xx or 503; bad input of any kind is a 4xx (signature, token or
freshness: 403; malformed: 400; too large: 413), never a 500 or a traceback. A database that
cannot be reached is a 503, which both providers retry. The handlers read
the body here and hand plain values to the modules beside this one, whose database work runs in
a worker thread, one transaction per request, retried on a lost race.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from twilio.twiml.messaging_response import MessagingResponse

from engine.app import App
from engine.cases.config import rules_for
from engine.consent.unsubscribe import UnsubscribeSigner, signer_for
from engine.db.session import writing
from engine.errors import InputError
from engine.web.app import console_routes
from engine.webhooks import (
    activity_events,
    inbound_sms,
    rejected,
    sendgrid_events,
    twilio_events,
    unsubscribe_pages,
)
from engine.webhooks.observed import METRICS_PATH, RequestCounter, metrics_endpoint
from engine.webhooks.signatures import (
    AUTHORIZATION_HEADER,
    SENDGRID_SIGNATURE_HEADER,
    SENDGRID_TIMESTAMP_HEADER,
    TWILIO_SIGNATURE_HEADER,
    BearerTokenVerifier,
    SendGridVerifier,
    SignatureError,
    TwilioVerifier,
)

log = logging.getLogger("campaign.webhooks")

SENDGRID_PATH = "/webhooks/sendgrid"
TWILIO_STATUS_PATH = "/webhooks/twilio/status"
TWILIO_INBOUND_PATH = "/webhooks/twilio/inbound"
EVENTS_PATH = "/webhooks/events"
MAX_BODY = 8 * 1024 * 1024  # SendGrid batches are a few MB at most
MAX_FORM_BODY = 64 * 1024  # a Twilio callback is well under 4 KB
MAX_FORM_FIELDS = 200
MAX_EVENTS_BODY = 2 * 1024 * 1024  # 1,000 events (the most per request) of up to ~2 KB each
# A client that trickles its body is cut off: the whole body must arrive within this.
BODY_TIMEOUT_SECONDS = 15.0
# Requests served at once; past it uvicorn answers 503 at once instead of holding memory.
MAX_CONCURRENT_REQUESTS = 200
# Pages a browser shows must not be framed by another site (clickjacking the unsubscribe).
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
TWIML = "application/xml"
T = TypeVar("T")


class _TooLarge(Exception):
    pass


class _BodyProblem(Exception):
    """The body never arrived whole: too slow (408) or the client went away."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class WebhookApp:
    """The state the handlers share: the engine, the verifiers, the unsubscribe signer."""

    def __init__(self, app: App) -> None:
        settings = app.settings
        self.app = app
        self.sendgrid = (
            SendGridVerifier(
                settings.sendgrid_webhook_public_key,
                tolerance_seconds=settings.webhook_timestamp_tolerance,
            )
            if settings.sendgrid_webhook_public_key
            else None
        )
        self.twilio = (
            TwilioVerifier(settings.twilio_auth_token, settings.public_url)
            if settings.twilio_auth_token
            else None
        )
        self.events_token = (
            BearerTokenVerifier(settings.events_webhook_token)
            if settings.events_webhook_token
            else None
        )

    # -- plumbing

    def transaction(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one transaction; a lost race (a unique key another request took
        first, a deadlock) rolls back and runs it again, at most three times."""
        for attempt in range(3):
            try:
                with writing(self.app.sessions) as session:
                    return work(session)
            except (IntegrityError, OperationalError) as exc:
                if attempt == 2 or not _is_race(exc):
                    raise
                log.info("retrying a webhook transaction after %s", type(exc.orig).__name__)
        raise AssertionError("unreachable")

    def signer(self, session: Session) -> UnsubscribeSigner:
        # Read per request, not cached: a key generated inside a transaction that then rolls
        # back must not outlive it.
        return signer_for(session, self.app.settings)


def _is_race(exc: DBAPIError) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    code = getattr(exc.orig, "sqlstate", None)
    return code in ("40001", "40P01")  # serialization failure, deadlock


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes, within BODY_TIMEOUT_SECONDS. A client that goes away
    is one log line (no traceback); one that trickles is cut off with 408."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0

    async def read() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), BODY_TIMEOUT_SECONDS)
    except TimeoutError:
        log.info(
            "%s: body not received within %.0f s; cut off", request.url.path, BODY_TIMEOUT_SECONDS
        )
        raise _BodyProblem(408, "the body did not arrive in time") from None
    except ClientDisconnect:
        log.info("%s: the client went away before sending its body", request.url.path)
        raise _BodyProblem(400, "the client went away") from None
    return b"".join(chunks)


def _form(body: bytes) -> list[tuple[str, str]]:
    """A form-encoded body as (name, value) pairs; InputError when it is not one."""
    try:
        decoded = body.decode("utf-8")
        return parse_qsl(
            decoded, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="strict"
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"the body is not a UTF-8 form: {exc}") from None


def _last(pairs: list[tuple[str, str]]) -> dict[str, str]:
    return dict(pairs)  # a repeated field keeps its last value, as Twilio's own helpers do


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _twiml(reply: str | None) -> Response:
    response = MessagingResponse()
    if reply:
        response.message(reply)
    return Response(str(response), media_type=TWIML)


# ---------------------------------------------------------------- handlers


def build_asgi_app(app: App) -> Starlette:
    """The ASGI app for this engine. Raises ConfigError for a malformed SendGrid key."""
    state = WebhookApp(app)

    async def healthz(request: Request) -> Response:
        def ping() -> None:
            with app.engine.connect() as connection:
                connection.execute(text("SELECT 1"))

        try:
            await run_in_threadpool(ping)
        except (DBAPIError, OSError) as exc:
            log.warning("health check: database unreachable: %s", exc)
            return _error(503, "database unreachable")
        return JSONResponse({"status": "ok"})

    async def sendgrid(request: Request) -> Response:
        # What can be refused without the body is refused before reading it.
        if state.sendgrid is None:
            return _error(403, "SENDGRID_WEBHOOK_PUBLIC_KEY is not set: events are refused")
        if not (
            request.headers.get(SENDGRID_SIGNATURE_HEADER)
            and request.headers.get(SENDGRID_TIMESTAMP_HEADER)
        ):
            log.warning("SendGrid webhook refused: signature headers missing")
            return _error(403, "signature verification failed")
        try:
            body = await _read_body(request, MAX_BODY)
        except _TooLarge:
            return _error(413, "body too large")
        try:
            state.sendgrid.verify(
                body,
                request.headers.get(SENDGRID_SIGNATURE_HEADER),
                request.headers.get(SENDGRID_TIMESTAMP_HEADER),
                now=app.clock.now(),
            )
        except SignatureError as exc:
            log.warning("SendGrid webhook refused: %s", exc)
            return _error(403, "signature verification failed")
        try:
            events = rejected.load_json(body)
        except (UnicodeDecodeError, ValueError, RecursionError):
            return _error(400, "the body is not JSON")
        if not isinstance(events, list):
            return _error(400, "the body is not a JSON array of events")
        at = app.clock.now()
        summary = await run_in_threadpool(
            state.transaction,
            lambda session: sendgrid_events.apply_events(
                session, events, at=at, default_region=app.settings.default_region
            ),
        )
        return JSONResponse(asdict(summary))

    async def twilio_status(request: Request) -> Response:
        checked = await _twilio_form(request, TWILIO_STATUS_PATH)
        if isinstance(checked, Response):
            return checked
        form = _last(checked)
        uid = request.query_params.get("m")
        at = app.clock.now()
        try:
            outcome = await run_in_threadpool(
                state.transaction,
                lambda session: twilio_events.apply_status_callback(
                    session, uid, form, at=at, default_region=app.settings.default_region
                ),
            )
        except InputError as exc:
            return _error(400, str(exc))
        return JSONResponse(asdict(outcome))

    async def twilio_inbound(request: Request) -> Response:
        checked = await _twilio_form(request, TWILIO_INBOUND_PATH)
        if isinstance(checked, Response):
            return checked
        form = _last(checked)
        at = app.clock.now()
        try:
            result = await run_in_threadpool(
                state.transaction,
                lambda session: inbound_sms.handle_inbound(
                    session,
                    form,
                    at=at,
                    default_region=app.settings.default_region,
                    case_rules=lambda key: rules_for(app.settings, key),
                ),
            )
        except InputError as exc:
            return _error(400, str(exc))
        return _twiml(result.reply)

    async def _twilio_form(request: Request, path: str) -> list[tuple[str, str]] | Response:
        if state.twilio is None:
            return _error(403, "TWILIO_AUTH_TOKEN is not set: callbacks are refused")
        if not request.headers.get(TWILIO_SIGNATURE_HEADER):
            log.warning("Twilio webhook refused: signature header missing")
            return _error(403, "signature verification failed")
        try:
            body = await _read_body(request, MAX_FORM_BODY)
        except _TooLarge:
            return _error(413, "body too large")
        try:
            pairs = _form(body)
        except InputError as exc:
            return _error(400, str(exc))
        try:
            state.twilio.verify(
                path, request.url.query, pairs, request.headers.get(TWILIO_SIGNATURE_HEADER)
            )
        except SignatureError as exc:
            log.warning("Twilio webhook refused: %s", exc)
            return _error(403, "signature verification failed")
        return pairs

    async def activity(request: Request) -> Response:
        # The token first: nothing of an unauthenticated body is read or parsed.
        if state.events_token is None:
            return _error(
                403, "CAMPAIGN_EVENTS_WEBHOOK_TOKEN is not set: activity events are refused"
            )
        try:
            state.events_token.verify(request.headers.get(AUTHORIZATION_HEADER))
        except SignatureError as exc:
            log.warning("events webhook refused: %s", exc)
            return _error(403, "missing or wrong Bearer token")
        try:
            body = await _read_body(request, MAX_EVENTS_BODY)
        except _TooLarge:
            return _error(413, "body too large")
        try:
            events = activity_events.parse_batch(body)
        except activity_events.TooManyEvents as exc:
            return _error(413, str(exc))
        except InputError as exc:
            return _error(400, str(exc))
        at = app.clock.now()
        receipt = await run_in_threadpool(
            state.transaction,
            lambda session: activity_events.receive_events(session, events, at=at),
        )
        return JSONResponse(asdict(receipt))

    async def unsubscribe(request: Request) -> Response:
        token = request.path_params["token"]
        if request.method == "POST":
            try:
                await _read_body(request, MAX_FORM_BODY)  # the one-click body; its content is moot
            except _TooLarge:
                return _error(413, "body too large")
        at = app.clock.now()
        post = request.method == "POST"

        def work(session: Session) -> str | None:
            who = unsubscribe_pages.recipient(session, state.signer(session), token)
            if who is None:
                return None
            if not post:
                return unsubscribe_pages.confirm_page(who)
            unsubscribe_pages.unsubscribe(
                session, who, at=at, default_region=app.settings.default_region
            )
            return unsubscribe_pages.done_page(who)

        page = await run_in_threadpool(state.transaction, work)
        if page is None:
            return HTMLResponse(
                unsubscribe_pages.missing_page(), status_code=404, headers=PAGE_HEADERS
            )
        return HTMLResponse(page, headers=PAGE_HEADERS)

    async def body_problem(request: Request, exc: Exception) -> Response:
        status = exc.status if isinstance(exc, _BodyProblem) else 400
        return _error(status, str(exc))

    async def database_down(request: Request, exc: Exception) -> Response:
        # Not the caller's fault: 503 makes SendGrid and Twilio try again later.
        log.error("webhook %s: database error: %s", request.url.path, exc)
        return _error(503, "database unavailable, try again later")

    counted = {
        SENDGRID_PATH: "sendgrid",
        TWILIO_STATUS_PATH: "twilio_status",
        TWILIO_INBOUND_PATH: "twilio_inbound",
        EVENTS_PATH: "events",
    }
    return Starlette(
        exception_handlers={DBAPIError: database_down, _BodyProblem: body_problem},
        middleware=[
            Middleware(
                RequestCounter,
                counters=app.metrics,
                endpoints=counted,
                prefixes={"/u/": "unsubscribe"},
            )
        ],
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route(METRICS_PATH, metrics_endpoint(app), methods=["GET"]),
            Route(SENDGRID_PATH, sendgrid, methods=["POST"]),
            Route(TWILIO_STATUS_PATH, twilio_status, methods=["POST"]),
            Route(TWILIO_INBOUND_PATH, twilio_inbound, methods=["POST"]),
            Route(EVENTS_PATH, activity, methods=["POST"]),
            Route("/u/{token}", unsubscribe, methods=["GET", "POST"]),
            *console_routes(app),  # the browser console (engine/web/app.py)
        ],
    )


def serve(
    app: App, *, host: str, port: int, log_level: str = "info", own_log_config: bool = True
) -> None:
    """Run the webhooks under uvicorn until interrupted. ``own_log_config=False`` leaves the
    log handlers as they are (JSON lines: uvicorn's records go through them too)."""
    import uvicorn

    asgi = build_asgi_app(app)
    extra: dict[str, Any] = {} if own_log_config else {"log_config": None}
    uvicorn.run(
        asgi,
        host=host,
        port=port,
        log_level=log_level,
        **extra,
        proxy_headers=True,
        limit_concurrency=MAX_CONCURRENT_REQUESTS,
        timeout_keep_alive=5,
    )


__all__ = ["build_asgi_app", "serve"]
