"""The machinery the fake providers share: a keep-alive HTTP/1.1 server on 127.0.0.1 in a
thread, recording of every request, and scripted failures.

Each fake (fake_sendgrid.py, fake_twilio.py) is a ``ThreadingHTTPServer`` on an ephemeral port,
used as a context manager. Failures are scripted per path: ``server.script(path, Canned(...),
...)`` queues canned answers (status, headers such as Retry-After, body),
``Canned.hang_up_now()`` (read the request, close the connection without answering) and
``Canned.slow(seconds)`` (answer normally, but late: a read timeout on the client side).
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

from engine.testing.contracts import ContractViolation


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
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class FakeServer:
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
    ) -> Answer:
        raise NotImplementedError


def _encode(body: Any) -> tuple[bytes, str | None]:
    if body is None:
        return b"", None
    if isinstance(body, bytes):
        return body, None
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    return json.dumps(body).encode(), "application/json"


def _make_handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
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
                reply = Answer(canned.status, payload, dict(canned.headers))
                if content_type and "Content-Type" not in reply.headers:
                    reply.headers["Content-Type"] = content_type
            else:
                reply = server.answer(self.command, path, headers, parsed, form, violations)
            recorded.answer_headers = dict(reply.headers)
            recorded.answer_body = reply.body
            recorded.answered = reply.status
            self._reply(reply)

        def _reply(self, reply: Answer) -> None:
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


def json_answer(status: int, body: Any) -> Answer:
    return Answer(status, json.dumps(body).encode(), {"Content-Type": "application/json"})
