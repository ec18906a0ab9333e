"""Fake SendGrid and Twilio servers for tests and benchmarks: real HTTP on 127.0.0.1.

Each fake is a ``ThreadingHTTPServer`` on an ephemeral port, run in a thread, used as a context
manager. It speaks just enough of the provider's API for our adapters, checks credentials the
way the provider does, and validates every request body against the provider's published
OpenAPI document (``tests/contracts/specs`` shipped with the repository, or
``CAMPAIGN_CONTRACTS_DIR``), so a body our adapter builds wrongly is rejected here exactly as it
would be in production. Every request is recorded for assertions.

Failures are scripted per path: ``server.script(path, Canned(...), ...)`` queues canned answers
(status, headers such as Retry-After, body), ``Canned.hang_up()`` (read the request, close the
connection without answering) and ``Canned.slow(seconds)`` (answer normally, but late: a read
timeout on the client side).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import os
import re
import secrets
import socket
import ssl
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

import jsonschema  # type: ignore[import-untyped]
from email_validator import EmailNotValidError, validate_email
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from engine.clock import Clock, SystemClock
from engine.errors import ConfigError

__all__ = [
    "Canned",
    "ContractViolation",
    "FakeSendGrid",
    "FakeTwilio",
    "RecordedRequest",
    "contracts_dir",
    "validate_sendgrid_mail_send",
    "validate_twilio_create_message",
    "validate_twilio_message_resource",
]

SENDGRID_SPEC = "tsg_mail_v3.json"
TWILIO_SPEC = "twilio_api_v2010.json"
MAIL_SEND_PATH = "/v3/mail/send"
ACTIVITY_PATH = "/v3/messages"
_UNIQUE_ARG_QUERY = re.compile(r"unique_args\['(?P<name>[\w.-]+)'\]\s*=\s*\"(?P<value>[^\"]*)\"")
MESSAGES_TEMPLATE = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
FORM = "application/x-www-form-urlencoded"
_TWILIO_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
# ListMessage's query parameters in the 2010 contract.
_TWILIO_LIST_PARAMETERS = {
    "To",
    "From",
    "DateSent",
    "DateSent<",
    "DateSent>",
    "PageSize",
    "Page",
    "PageToken",
}
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


# ---------------------------------------------------------------- the contracts


def contracts_dir() -> Path:
    """Where the providers' OpenAPI documents are: CAMPAIGN_CONTRACTS_DIR, else the copy the
    repository ships as test data (``tests/contracts/specs``), so a clone tests on its own."""
    override = os.environ.get("CAMPAIGN_CONTRACTS_DIR")
    folder = (
        Path(override)
        if override
        else Path(__file__).resolve().parents[2] / "tests" / "contracts" / "specs"
    )
    missing = [name for name in (SENDGRID_SPEC, TWILIO_SPEC) if not (folder / name).is_file()]
    if missing:
        raise ConfigError(
            f"provider API contracts not found: {', '.join(str(folder / n) for n in missing)} "
            "(set CAMPAIGN_CONTRACTS_DIR to the folder holding the OpenAPI documents)"
        )
    return folder


@dataclass(frozen=True)
class ContractViolation:
    field: str | None  # dotted path into the body, e.g. "personalizations.0.to.0.email"
    message: str


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker()

    @checker.checks("email", raises=EmailNotValidError)
    def _email(value: object) -> bool:
        if isinstance(value, str):
            validate_email(value, check_deliverability=False)
        return True

    @checker.checks("phone-number")
    def _phone(value: object) -> bool:
        return not isinstance(value, str) or bool(_E164.match(value))

    @checker.checks("uri")
    def _uri(value: object) -> bool:
        if not isinstance(value, str):
            return True
        parts = urlsplit(value)
        return bool(parts.scheme and parts.netloc)

    return checker


@functools.cache
def _spec(name: str) -> tuple[dict[str, Any], Registry[Any]]:
    path = contracts_dir() / name
    document = json.loads(path.read_text(encoding="utf-8"))
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    return document, Registry().with_resource(f"urn:spec:{name}", resource)


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


@functools.cache
def _sendgrid_mail_send_validator() -> jsonschema.protocols.Validator:
    document, registry = _spec(SENDGRID_SPEC)
    operation = document["paths"][MAIL_SEND_PATH]["post"]
    body_ref = operation["requestBody"]["$ref"]  # "#/components/requestBodies/PostMailSend"
    schema_ref = f"urn:spec:{SENDGRID_SPEC}{body_ref}/" + _pointer(
        "content", "application/json", "schema"
    )
    # The document is OpenAPI 3.1, whose schemas are JSON Schema 2020-12.
    return jsonschema.Draft202012Validator(
        {"$ref": schema_ref}, registry=registry, format_checker=_format_checker()
    )


@functools.cache
def _twilio_create_message() -> tuple[dict[str, Any], jsonschema.protocols.Validator]:
    document, registry = _spec(TWILIO_SPEC)
    operation = document["paths"][MESSAGES_TEMPLATE]["post"]
    schema = operation["requestBody"]["content"][FORM]["schema"]
    ref = f"urn:spec:{TWILIO_SPEC}#/" + _pointer(
        "paths", MESSAGES_TEMPLATE, "post", "requestBody", "content", FORM, "schema"
    )
    # OpenAPI 3.0 (nullable, ...): the OAS 3.0 dialect validator, refs resolved in the document.
    validator = OAS30Validator({"$ref": ref}, registry=registry, format_checker=_format_checker())
    return schema, validator


@functools.cache
def _twilio_message_resource_validator() -> jsonschema.protocols.Validator:
    _, registry = _spec(TWILIO_SPEC)
    ref = f"urn:spec:{TWILIO_SPEC}#/components/schemas/" + _pointer("api.v2010.account.message")
    return OAS30Validator({"$ref": ref}, registry=registry, format_checker=_format_checker())


def _violations(validator: jsonschema.protocols.Validator, body: object) -> list[ContractViolation]:
    out = []
    for error in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(part) for part in error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            # Point at the missing property itself, as the providers do.
            missing = re.match(r"'([^']+)' is a required property", error.message)
            if missing:
                path = f"{path}.{missing.group(1)}" if path else missing.group(1)
        out.append(ContractViolation(path or None, error.message))
    return out


def validate_sendgrid_mail_send(body: object) -> list[ContractViolation]:
    """Violations of SendGrid's POST /v3/mail/send request schema (empty when valid)."""
    return _violations(_sendgrid_mail_send_validator(), body)


def _coerce_form(form: Mapping[str, list[str]], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Form fields are strings on the wire; give them the schema's types before validating."""
    properties = schema.get("properties", {})
    out: dict[str, Any] = {}
    for key, values in form.items():
        kind = properties.get(key, {}).get("type")
        if kind == "array":
            out[key] = list(values)
            continue
        value: Any = values[-1]
        if kind == "boolean" and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        elif kind == "integer" and re.fullmatch(r"-?[0-9]+", value):
            value = int(value)
        elif kind == "number":
            with contextlib.suppress(ValueError):
                value = float(value)
        out[key] = value
    return out


def validate_twilio_create_message(form: Mapping[str, list[str]]) -> list[ContractViolation]:
    """Violations of Twilio's CreateMessage form schema (empty when valid)."""
    schema, validator = _twilio_create_message()
    return _violations(validator, _coerce_form(form, schema))


def validate_twilio_message_resource(resource: object) -> list[ContractViolation]:
    """Violations of Twilio's Message resource schema (to check the fake's own answers)."""
    return _violations(_twilio_message_resource_validator(), resource)


# ---------------------------------------------------------------- the server


@dataclass(frozen=True)
class Canned:
    """A scripted answer. ``status=None`` answers normally (after ``delay`` seconds)."""

    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None  # dict/list -> JSON; str/bytes as is
    delay: float = 0.0
    hang_up: bool = False

    @classmethod
    def json(cls, status: int, body: Any, **headers: str) -> Canned:
        """A JSON answer; header keyword names use ``_`` for ``-`` (``Retry_After="5"``)."""
        names = {k.replace("_", "-"): v for k, v in headers.items()}
        return cls(status=status, body=body, headers=names)

    @classmethod
    def hang_up_now(cls) -> Canned:
        """Read the whole request, then close the connection without a word."""
        return cls(hang_up=True)

    @classmethod
    def slow(cls, seconds: float) -> Canned:
        """Answer normally but only after ``seconds``: longer than the client's read timeout,
        the request has reached the provider and the client never learns the outcome."""
        return cls(delay=seconds)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    json: Any = None
    form: Mapping[str, list[str]] | None = None
    contract_errors: tuple[ContractViolation, ...] = ()
    peer: tuple[str, int] = ("", 0)  # the client's address: one port per connection
    # time.monotonic() when the request's head had arrived, before its body was read or
    # validated: what a provider measuring a sender's rate would see.
    received_at: float = 0.0
    # The answer sent back; None while a slow answer is pending or when the server hung up.
    answered: int | None = None
    answer_headers: Mapping[str, str] = field(default_factory=dict)
    answer_body: bytes = b""

    @property
    def answer_json(self) -> Any:
        return json.loads(self.answer_body) if self.answer_body else None


@dataclass
class _Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class _FakeServer:
    """Shared machinery: thread, keep-alive HTTP/1.1, recording, scripted failures."""

    name: ClassVar[str] = "fake"

    def __init__(
        self, *, validate: bool = True, record: bool = True, tls: ssl.SSLContext | None = None
    ) -> None:
        self.validate = validate
        self.record = record
        self.tls = tls  # serve HTTPS with this server context (certificate tests)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._scripts: dict[str, deque[Canned]] = defaultdict(deque)
        self._standing: Canned | None = None
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        handler = _make_handler(self)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        # Keep-alive connections would make close() wait for clients; we close them ourselves.
        httpd.block_on_close = False
        if self.tls is not None:
            httpd.socket = self.tls.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
            threads = list(self._threads)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=5)
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError(f"{self.name} server is not running")
        host, port = self._httpd.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host!s}:{port}"

    # -- scripting and recording

    def script(self, path: str, *answers: Canned) -> None:
        """Queue canned answers for the next requests to ``path`` (first in, first out)."""
        with self._lock:
            self._scripts[path].extend(answers)

    def outage(self, answer: Canned | None) -> None:
        """Answer every request with ``answer`` (a 503, a slow answer...) until called with
        None: a provider that is down for a while, however many requests come meanwhile.
        Scripted answers still come first."""
        with self._lock:
            self._standing = answer

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._scripts.clear()

    def drop_connections(self) -> None:
        """Close every open keep-alive connection from the server side, as a real server does
        after its idle timeout; clients must notice and reconnect."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def _next_canned(self, path: str) -> Canned | None:
        with self._lock:
            queue = self._scripts.get(path)
            return queue.popleft() if queue else self._standing

    def _remember(self, request: RecordedRequest) -> None:
        if self.record:
            with self._lock:
                self._requests.append(request)

    # -- provider behaviour (subclasses)

    def inspect(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[Any, Mapping[str, list[str]] | None, tuple[ContractViolation, ...]]:
        """Parse the body and validate it against the contract: (json, form, violations)."""
        raise NotImplementedError

    def answer(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        parsed: Any,
        form: Mapping[str, list[str]] | None,
        violations: tuple[ContractViolation, ...],
    ) -> _Answer:
        raise NotImplementedError


def _encode(body: Any) -> tuple[bytes, str | None]:
    if body is None:
        return b"", None
    if isinstance(body, bytes):
        return body, None
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    return json.dumps(body).encode(), "application/json"


def _make_handler(server: _FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs
        server_version = f"Fake{server.name}/1"
        timeout = 30  # an idle keep-alive connection is dropped, as real servers do

        def setup(self) -> None:
            super().setup()
            with server._lock:
                server._connections.add(self.connection)
                server._threads.add(threading.current_thread())

        def finish(self) -> None:
            try:
                super().finish()
            finally:
                with server._lock:
                    server._connections.discard(self.connection)
                    server._threads.discard(threading.current_thread())

        def log_message(self, format: str, *args: Any) -> None:
            pass  # tests read server.requests, not stderr

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            received_at = time.monotonic()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = urlsplit(self.path).path
            headers = {k.lower(): v for k, v in self.headers.items()}
            parsed, form, violations = server.inspect(self.command, path, headers, body)
            if self.command == "GET":  # a list endpoint's filters
                form = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
            canned = server._next_canned(path)
            # Recorded on arrival: a client that times out has still reached the provider.
            recorded = RecordedRequest(
                self.command,
                path,
                headers,
                body,
                json=parsed,
                form=form,
                contract_errors=violations,
                peer=(str(self.client_address[0]), int(self.client_address[1])),
                received_at=received_at,
            )
            server._remember(recorded)
            if canned is not None and canned.delay and server._stopping.wait(canned.delay):
                self.close_connection = True
                return
            if canned is not None and canned.hang_up:
                self.close_connection = True
                return
            if canned is not None and canned.status is not None:
                payload, content_type = _encode(canned.body)
                reply = _Answer(canned.status, payload, dict(canned.headers))
                if content_type and "Content-Type" not in reply.headers:
                    reply.headers["Content-Type"] = content_type
            else:
                reply = server.answer(self.command, path, headers, parsed, form, violations)
            recorded.answer_headers = dict(reply.headers)
            recorded.answer_body = reply.body
            recorded.answered = reply.status
            self._reply(reply)

        def _reply(self, reply: _Answer) -> None:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            try:
                self.wfile.write(reply.body)
            except OSError:
                self.close_connection = True  # the client gave up (its read timeout)

    return Handler


# ---------------------------------------------------------------- SendGrid v3


def _sendgrid_errors(*errors: tuple[str | None, str]) -> dict[str, Any]:
    return {"errors": [{"field": f, "message": m, "help": None} for f, m in errors]}


class FakeSendGrid(_FakeServer):
    """SendGrid v3 POST /v3/mail/send: Bearer auth, body validated against the contract,
    202 with X-Message-Id, or 400 with SendGrid's ``{"errors": [{field, message}]}``."""

    name = "SendGrid"

    def __init__(self, api_key: str = "SG.test-key", **options: Any) -> None:
        super().__init__(**options)
        self.api_key = api_key
        # What it took, one entry per recipient, as its Email Activity API lists them (with
        # our message id, which that API filters on but does not show).
        self.activity: list[dict[str, Any]] = []

    def inspect(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[Any, Mapping[str, list[str]] | None, tuple[ContractViolation, ...]]:
        if path != MAIL_SEND_PATH or method != "POST":
            return None, None, ()
        try:
            parsed = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return None, None, (ContractViolation(None, f"body is not JSON: {exc}"),)
        violations = tuple(validate_sendgrid_mail_send(parsed)) if self.validate else ()
        return parsed, None, violations

    def answer(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        parsed: Any,
        form: Mapping[str, list[str]] | None,
        violations: tuple[ContractViolation, ...],
    ) -> _Answer:
        if path == ACTIVITY_PATH and method == "GET":
            return self._activity(headers, form or {})
        if path != MAIL_SEND_PATH:
            return _json_answer(404, _sendgrid_errors((None, f"no route {path}")))
        if method != "POST":
            return _json_answer(405, _sendgrid_errors((None, "method not allowed")))
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return _json_answer(
                401,
                _sendgrid_errors(
                    (None, "The provided authorization grant is invalid, expired, or revoked")
                ),
            )
        if not headers.get("content-type", "").startswith("application/json"):
            return _json_answer(415, _sendgrid_errors((None, "Content-Type must be JSON")))
        if violations:
            return _json_answer(400, _sendgrid_errors(*((v.field, v.message) for v in violations)))
        # SendGrid's id is 22 url-safe characters; per-recipient ids in events extend it.
        message_id = secrets.token_urlsafe(16)[:22]
        self._took(message_id, parsed)
        return _Answer(202, b"", {"X-Message-Id": message_id})

    def _took(self, message_id: str, mail: dict[str, Any]) -> None:
        if not self.record:
            return
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        entries = [
            {
                "from_email": (mail.get("from") or {}).get("email"),
                "msg_id": f"{message_id}.filterdrecv-fake-{index}.0",
                "subject": p.get("subject") or mail.get("subject") or "",
                "to_email": to.get("email"),
                "status": "processed",
                "opens_count": 0,
                "clicks_count": 0,
                "last_event_time": at,
                "unique_args": dict(p.get("custom_args") or {}),
            }
            for index, p in enumerate(mail.get("personalizations") or [])
            for to in p.get("to") or []
        ]
        with self._lock:
            self.activity.extend(entries)

    def _activity(self, headers: Mapping[str, str], params: Mapping[str, list[str]]) -> _Answer:
        """``GET /v3/messages?query=...&limit=N`` (Email Activity), as SendGrid documents
        it; of its query language only ``unique_args['NAME']="VALUE"`` (what reconcile
        asks) is understood, anything else is a 400. The shipped contract has no such
        endpoint: the shape is the documented one."""
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return _json_answer(401, _sendgrid_errors((None, "authorization required")))
        query = (params.get("query") or [""])[-1]
        match = _UNIQUE_ARG_QUERY.fullmatch(query.strip())
        limit_text = (params.get("limit") or ["10"])[-1]
        if match is None or not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
            return _json_answer(400, _sendgrid_errors(("query", f"invalid query {query!r}")))
        name, value = match["name"], match["value"]
        with self._lock:
            found = [e for e in self.activity if e["unique_args"].get(name) == value]
        shown = [{k: v for k, v in e.items() if k != "unique_args"} for e in found]
        return _json_answer(200, {"messages": shown[: int(limit_text)]})


# ---------------------------------------------------------------- Twilio 2010


def _twilio_error(status: int, code: int | None, message: str) -> dict[str, Any]:
    more = f"https://www.twilio.com/docs/errors/{code}" if code else None
    return {"code": code, "message": message, "more_info": more, "status": status}


class FakeTwilio(_FakeServer):
    """Twilio 2010 POST /2010-04-01/Accounts/{AccountSid}/Messages.json: Basic auth with the
    account sid and auth token, form body validated against CreateMessage, 201 with a Message
    resource (sid "SM" + 32 hex, status "queued")."""

    name = "Twilio"

    def __init__(
        self,
        account_sid: str = "AC" + "0" * 31 + "1",
        auth_token: str = "test-auth-token",
        *,
        clock: Clock | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.clock = clock or SystemClock()
        self.created: list[dict[str, Any]] = []  # the Message resources made, oldest first

    def messages_path(self, account_sid: str | None = None) -> str:
        return f"/2010-04-01/Accounts/{account_sid or self.account_sid}/Messages.json"

    def inspect(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[Any, Mapping[str, list[str]] | None, tuple[ContractViolation, ...]]:
        if not _TWILIO_MESSAGES.match(path) or method != "POST":
            return None, None, ()
        try:
            form = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError) as exc:
            return None, None, (ContractViolation(None, f"body is not form-encoded: {exc}"),)
        violations = tuple(validate_twilio_create_message(form)) if self.validate else ()
        return None, form, violations

    def _authorised(self, headers: Mapping[str, str], path_sid: str) -> bool:
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == self.account_sid == path_sid and password == self.auth_token

    def answer(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        parsed: Any,
        form: Mapping[str, list[str]] | None,
        violations: tuple[ContractViolation, ...],
    ) -> _Answer:
        match = _TWILIO_MESSAGES.match(path)
        if match is None:
            return _json_answer(
                404, _twilio_error(404, 20404, f"The requested resource {path} was not found")
            )
        if method not in ("POST", "GET"):
            return _json_answer(405, _twilio_error(405, 20004, "Method not allowed"))
        if not self._authorised(headers, match["sid"]):
            return _json_answer(401, _twilio_error(401, 20003, "Authenticate"))
        if method == "GET":
            return self._list(path, form or {})
        form = form or {}
        if violations:
            return _json_answer(400, self._violation_error(violations))
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return _json_answer(
                400, _twilio_error(400, 21603, "A 'From' or 'MessagingServiceSid' is required.")
            )
        if not (form.get("Body") or form.get("MediaUrl") or form.get("ContentSid")):
            return _json_answer(400, _twilio_error(400, 21602, "Message body is required."))
        resource = self._message_resource(form)
        if self.record:
            with self._lock:
                self.created.append(resource)
        return _json_answer(201, resource)

    def _list(self, path: str, params: Mapping[str, list[str]]) -> _Answer:
        """``GET .../Messages.json`` (ListMessage): filters ``To``, ``From``, ``DateSent``,
        ``DateSent<``, ``DateSent>``; one page of up to ``PageSize`` (1000 at most), newest
        first. A parameter the contract does not name is a 400."""
        unknown = sorted(set(params) - _TWILIO_LIST_PARAMETERS)
        size_text = (params.get("PageSize") or ["50"])[-1]
        if unknown or not size_text.isdigit() or not 1 <= int(size_text) <= 1000:
            return _json_answer(
                400, _twilio_error(400, 20001, f"Invalid list parameters: {unknown or size_text}")
            )

        def one(key: str) -> str | None:
            values = params.get(key)
            return values[-1] if values else None

        try:
            after, before, on = (
                _iso(one("DateSent>")),
                _iso(one("DateSent<")),
                _iso(one("DateSent")),
            )
        except ValueError as exc:
            return _json_answer(400, _twilio_error(400, 20001, f"Invalid DateSent: {exc}"))
        with self._lock:
            resources = list(reversed(self.created))
        chosen = []
        for resource in resources:
            sent = parsedate_to_datetime(resource["date_created"])
            if (
                (one("To") is None or resource["to"] == one("To"))
                and (one("From") is None or resource["from"] == one("From"))
                and (after is None or sent >= after)
                and (before is None or sent < before)
                and (on is None or sent.date() == on.date())
            ):
                chosen.append({**resource, "date_sent": resource["date_created"]})
        page = chosen[: int(size_text)]
        return _json_answer(
            200,
            {
                "messages": page,
                "start": 0,
                "end": max(0, len(page) - 1),
                "page": 0,
                "page_size": int(size_text),
                "first_page_uri": f"{path}?PageSize={size_text}&Page=0",
                "next_page_uri": None,
                "previous_page_uri": None,
                "uri": f"{path}?PageSize={size_text}&Page=0",
            },
        )

    def _violation_error(self, violations: tuple[ContractViolation, ...]) -> dict[str, Any]:
        by_field = {v.field: v for v in violations}
        text = "; ".join(f"{v.field}: {v.message}" for v in violations)
        to = by_field.get("To")
        if to is not None:
            if "required" in to.message:
                return _twilio_error(400, 21604, "A 'To' phone number is required.")
            return _twilio_error(400, 21211, f"Invalid 'To' Phone Number: {text}")
        if "From" in by_field:
            return _twilio_error(400, 21212, f"Invalid 'From' Phone Number: {text}")
        if "StatusCallback" in by_field:
            return _twilio_error(400, 21609, f"Invalid StatusCallback url: {text}")
        # The fake's catch-all: real Twilio has a code per parameter; the status says enough.
        return _twilio_error(400, None, f"Invalid parameter: {text}")

    def _message_resource(self, form: Mapping[str, list[str]]) -> dict[str, Any]:
        def one(key: str) -> str | None:
            values = form.get(key)
            return values[-1] if values else None

        sid = "SM" + uuid.uuid4().hex
        created = format_datetime(self.clock.now(), usegmt=True)
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}"
        body = one("Body") or ""
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": created,
            "date_sent": None,
            "date_updated": created,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": one("From"),
            "messaging_service_sid": one("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": str(max(1, -(-len(body) // 153) if len(body) > 160 else 1)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if one("MessagingServiceSid") else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": one("To"),
            "uri": f"{uri}.json",
        }


def _iso(value: str | None) -> datetime | None:
    """An ISO 8601 instant (UTC when it has no offset), or None."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _json_answer(status: int, body: Any) -> _Answer:
    return _Answer(status, json.dumps(body).encode(), {"Content-Type": "application/json"})
