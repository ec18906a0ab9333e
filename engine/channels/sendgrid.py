"""Email through SendGrid's v3 Mail Send API.

Request bodies are what the official SDK's helpers (``sendgrid.helpers.mail``) make, so the
JSON is what SendGrid's own library would send: batches are built with the helpers, single
messages as plain dicts checked against them in the tests (see build_mail). The transport is
ours: the SDK's python_http_client opens a new connection for every request, which costs
about 3x in throughput (bench/bench_email_transport.py); we keep one persistent keep-alive
HTTP/1.1 connection per thread and read the answers ourselves (see PooledHttpClient).

Two SendGrid facts shape the body: the contract types message-level ``custom_args`` as a
string, so our message id travels in each personalization's ``custom_args`` (which is also
where SendGrid scopes it per recipient); and per-recipient headers (List-Unsubscribe carries a
per-recipient URL) go in the personalization too, so a batch keeps them apart.
"""

from __future__ import annotations

import json
import math
import re
import select
import socket
import ssl
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sendgrid.helpers.mail import (
    Category,
    CustomArg,
    From,
    Header,
    HtmlContent,
    Mail,
    Personalization,
    PlainTextContent,
    ReplyTo,
    Subject,
    TemplateId,
    To,
)

from engine.channels.base import (
    EMAIL,
    CampaignStopError,
    ChannelError,
    Outbound,
    OutboundEmail,
    ProviderLogError,
    ProviderRecord,
    RecipientError,
    RetryableError,
    SendResult,
    UnknownOutcomeError,
    classify_http_status,
    parse_retry_after,
    wrong_kind,
)
from engine.clock import Clock, SystemClock
from engine.errors import ConfigError

MAIL_SEND = "/v3/mail/send"
ACTIVITY = "/v3/messages"  # the Email Activity API (an add-on of the SendGrid account)
MAX_PERSONALIZATIONS = 1000  # SendGrid's limit per request (maxItems in the contract)
# An error field naming a recipient address: "personalizations.3.to.0.email", "...to".
_RECIPIENT_FIELD = re.compile(r"^personalizations\.(\d+)\.(?:to|cc|bcc)(?:\.\d+)?(?:\.email)?$")


# ---------------------------------------------------------------- request bodies


def _address(cls: Any, email: str, name: str | None) -> Any:
    # Set the fields directly: the helpers' constructor parses "Name <addr>" out of a lone
    # address and mangles anything unusual, which would hide a bad address from SendGrid's
    # own validation (and from the invalid-address classification).
    address = cls()
    address.email = email
    if name:
        address.name = name
    return address


def _personalization(message: OutboundEmail, *, template: bool) -> Personalization:
    personalization = Personalization()
    personalization.add_to(_address(To, message.to_email, message.to_name))
    for key, value in message.custom_args.items():
        personalization.add_custom_arg(CustomArg(key, value))
    for name, value in message.headers.items():
        personalization.add_header(Header(name, value))
    if template:
        personalization.dynamic_template_data = dict(message.dynamic_template_data or {})
    return personalization


def _envelope(first: OutboundEmail) -> Mail:
    mail = Mail()
    mail.from_email = _address(From, first.from_email, first.from_name)
    if first.reply_to:
        mail.reply_to = _address(ReplyTo, first.reply_to, None)
    for category in first.categories:
        mail.add_category(Category(category))
    if first.template_id is not None:
        mail.template_id = TemplateId(first.template_id)
    return mail


def build_mail(message: OutboundEmail) -> dict[str, Any]:
    """The v3 Mail Send body for one message (a template message or subject + content).

    Built as plain dicts, field for field what :func:`build_mail_with_sdk` (the official
    helpers) makes, which tests/channels check on every shape of message: the helpers' objects
    cost about as much CPU per message as the HTTP request itself.
    """
    to: dict[str, str] = {"email": message.to_email}
    if message.to_name:
        to = {"name": message.to_name, "email": message.to_email}
    personalization: dict[str, Any] = {"to": [to]}
    if message.headers:
        personalization["headers"] = dict(message.headers)
    if message.is_template and message.dynamic_template_data:  # the helpers drop an empty one
        personalization["dynamic_template_data"] = dict(message.dynamic_template_data)
    personalization["custom_args"] = dict(message.custom_args)
    sender: dict[str, str] = {"email": message.from_email}
    if message.from_name:
        sender = {"name": message.from_name, "email": message.from_email}
    body: dict[str, Any] = {"from": sender}
    if not message.is_template:
        body["subject"] = message.subject
    body["personalizations"] = [personalization]
    if not message.is_template:
        # SendGrid requires text/plain before text/html.
        content = []
        if message.text:
            content.append({"type": "text/plain", "value": message.text})
        if message.html:
            content.append({"type": "text/html", "value": message.html})
        if content:
            body["content"] = content
    else:
        body["template_id"] = message.template_id
    if message.categories:
        body["categories"] = list(reversed(message.categories))  # the helpers prepend each
    if message.reply_to:
        body["reply_to"] = {"email": message.reply_to}
    return body


def build_mail_with_sdk(message: OutboundEmail) -> dict[str, Any]:
    """:func:`build_mail` through the official helpers: the reference its output must equal."""
    mail = _envelope(message)
    mail.add_personalization(_personalization(message, template=message.is_template))
    if not message.is_template:
        mail.subject = Subject(message.subject)
        # SendGrid requires text/plain before text/html.
        if message.text:
            mail.add_content(PlainTextContent(message.text))
        if message.html:
            mail.add_content(HtmlContent(message.html))
    body: dict[str, Any] = mail.get()
    return body


def _envelope_key(message: OutboundEmail) -> tuple[Any, ...]:
    return (
        message.template_id,
        message.from_email,
        message.from_name,
        message.reply_to,
        message.categories,
    )


def build_batch_mail(messages: Sequence[OutboundEmail]) -> dict[str, Any]:
    """One body with a personalization per message. All must share the envelope (template,
    sender, reply-to, categories): ``SendGridChannel.send_batch`` groups them so."""
    if not messages:
        raise ValueError("an empty batch has no body")
    if len(messages) > MAX_PERSONALIZATIONS:
        raise ValueError(f"{len(messages)} messages exceed {MAX_PERSONALIZATIONS} per request")
    first = messages[0]
    if not first.is_template:
        raise ValueError(f"message {first.message_id}: batches are for dynamic templates")
    key = _envelope_key(first)
    mail = _envelope(first)
    for index, message in enumerate(messages):
        if _envelope_key(message) != key:
            raise ValueError(f"message {message.message_id}: envelope differs from the batch's")
        # The helper inserts at index 0 by default; SendGrid's error fields name positions
        # ("personalizations.3.to"), so the order must be ours.
        mail.add_personalization(_personalization(message, template=True), index=index)
    body: dict[str, Any] = mail.get()
    return body


# ---------------------------------------------------------------- transport


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes


class HttpProtocolError(Exception):
    """The server's answer is not HTTP/1.x as we read it."""


class _Connection:
    """One keep-alive HTTP/1.1 connection: a socket and a buffered reader over it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


_MAX_LINE = 65536
_NO_BODY = frozenset((204, 304))


def _read_answer(reader: Any) -> tuple[HttpAnswer, bool]:
    """(the answer, whether the server will close the connection) from a buffered reader."""
    while True:
        line = reader.readline(_MAX_LINE + 1)
        if not line:
            raise HttpProtocolError("the server closed the connection without an answer")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise HttpProtocolError(f"not an HTTP status line: {line[:80]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        while True:
            line = reader.readline(_MAX_LINE + 1)
            if line in (b"\r\n", b"\n"):
                break
            if not line or len(line) > _MAX_LINE:
                raise HttpProtocolError("the answer's headers are cut off or too long")
            name, colon, value = line.decode("latin-1").partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        if status >= 200:  # 1xx (an unasked-for 100 Continue): the real answer follows
            break
    connection = headers.get("connection", "").lower()
    will_close = "close" in connection or (
        parts[0] == b"HTTP/1.0" and "keep-alive" not in connection
    )
    if status in _NO_BODY:
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = _read_chunked(reader)
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise HttpProtocolError(f"bad Content-Length {headers['content-length']!r}") from None
        body = reader.read(length)
        if len(body) < length:
            raise HttpProtocolError("the answer's body is cut off")
    else:
        body, will_close = reader.read(), True  # delimited by the end of the connection
    return HttpAnswer(status, headers, body), will_close


def _read_chunked(reader: Any) -> bytes:
    chunks: list[bytes] = []
    while True:
        line = reader.readline(_MAX_LINE + 1)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise HttpProtocolError(f"bad chunk size line {line[:80]!r}") from None
        if size == 0:
            while reader.readline(_MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        chunk = reader.read(size)
        if len(chunk) < size:
            raise HttpProtocolError("a chunk of the answer's body is cut off")
        chunks.append(chunk)
        reader.readline(_MAX_LINE + 1)  # the CRLF after the chunk


class PooledHttpClient:
    """One persistent keep-alive HTTP(S) connection per thread, with errors sorted by whether
    the request could have reached the server: connect failures and failures while writing
    are retryable; a timeout or hang-up while waiting for the answer is an unknown outcome.

    HTTP/1.1 written and read here rather than by http.client: a request is one pre-built
    head and the body in one write, and the answer's few headers are read without the email
    parser http.client uses for them, which alone cost more than building the message."""

    def __init__(
        self, base_url: str, *, connect_timeout: float = 5.0, read_timeout: float = 30.0
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = self._port == (443 if parts.scheme == "https" else 80)
        self._host_header = parts.netloc if not default_port else parts.hostname
        self._prefix = parts.path.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[_Connection] = set()
        self._heads: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}

    def _connection(self) -> _Connection | None:
        connection: _Connection | None = getattr(self._local, "connection", None)
        if connection is not None and _dropped(connection.sock):
            # The server closed the idle connection (keep-alive timeout): writing to it would
            # turn a harmless reconnect into an unknown outcome.
            self._discard(connection)
            connection = None
        return connection

    def _connect(self, what: str) -> _Connection:
        try:
            sock = socket.create_connection((self._host, self._port), self.connect_timeout)
            try:
                # Head and body go in one write, but the next request must not wait for the
                # (delayed) ACK of this one either.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._scheme == "https":
                    context = ssl.create_default_context()
                    sock = context.wrap_socket(sock, server_hostname=self._host)
                # The connect timeout is short; the answer may legitimately take longer.
                sock.settimeout(self.read_timeout)
            except BaseException:
                sock.close()
                raise
        except OSError as exc:
            raise RetryableError(f"{what}: could not connect to {self.base_url}: {exc}") from exc
        connection = _Connection(sock)
        self._local.connection = connection
        with self._lock:
            self._open.add(connection)
        return connection

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        with self._lock:
            self._open.discard(connection)
        if getattr(self._local, "connection", None) is connection:
            self._local.connection = None

    def _head(self, path: str, headers: Mapping[str, str]) -> str:
        """The request head up to Content-Length (cached: the same few per channel)."""
        key = (path, tuple(headers.items()))
        head = self._heads.get(key)
        if head is None:
            lines = [f"POST {self._prefix}{path} HTTP/1.1", f"Host: {self._host_header}"]
            for name, value in headers.items():
                if "\r" in name + value or "\n" in name + value or ":" in name:
                    raise ValueError(f"bad header {name!r}")
                lines.append(f"{name}: {value}")
            head = "\r\n".join(lines) + "\r\nContent-Length: "
            self._heads[key] = head
        return head

    def post(self, path: str, body: bytes, headers: Mapping[str, str], *, what: str) -> HttpAnswer:
        request = (self._head(path, headers) + f"{len(body)}\r\n\r\n").encode("latin-1") + body
        connection = self._connection() or self._connect(what)
        try:
            connection.sock.sendall(request)
        except OSError as exc:
            # The request was not completely written: the server cannot have acted on it.
            self._discard(connection)
            raise RetryableError(
                f"{what}: connection to {self.base_url} failed while sending: {exc}"
            ) from exc
        try:
            answer, will_close = _read_answer(connection.reader)
        except TimeoutError as exc:
            self._discard(connection)
            raise UnknownOutcomeError(
                f"{what}: no answer from {self.base_url} within {self.read_timeout:g}s after "
                "the request was sent; it may have been accepted: not resending"
            ) from exc
        except (OSError, HttpProtocolError) as exc:
            self._discard(connection)
            raise UnknownOutcomeError(
                f"{what}: {self.base_url} closed the connection after the request was sent "
                f"({exc!r}); it may have been accepted: not resending"
            ) from exc
        if will_close:
            self._discard(connection)
        return answer

    def close(self) -> None:
        with self._lock:
            connections = list(self._open)
            self._open.clear()
        for connection in connections:
            connection.close()
        self._local = threading.local()


def _dropped(sock: socket.socket) -> bool:
    """True when an idle connection has something to read: EOF (closed) or stray bytes."""
    try:
        if hasattr(select, "poll"):  # select() cannot watch descriptors above 1023
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


# ---------------------------------------------------------------- the channel


BatchOutcome = dict[str, SendResult | ChannelError]


class SendGridChannel:
    name = "sendgrid"
    kind = EMAIL

    def __init__(
        self,
        api_key: str,
        *,
        host: str = "https://api.sendgrid.com",
        clock: Clock | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        batch_size: int = MAX_PERSONALIZATIONS,
    ) -> None:
        if not api_key:
            raise ConfigError("SENDGRID_API_KEY is empty")
        if not 1 <= batch_size <= MAX_PERSONALIZATIONS:
            raise ConfigError(f"batch_size must be 1..{MAX_PERSONALIZATIONS}, not {batch_size}")
        self.clock = clock or SystemClock()
        self.batch_size = batch_size
        self._api_key, self._host = api_key, host
        self._http = PooledHttpClient(
            host, connect_timeout=connect_timeout, read_timeout=read_timeout
        )
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "campaign-engine (sendgrid helpers)",
        }

    def send(self, message: Outbound) -> SendResult:
        if not isinstance(message, OutboundEmail):
            raise wrong_kind(self.name, self.kind, message)
        answer = self._post(build_mail(message), what=f"message {message.message_id}")
        if 200 <= answer.status < 300:
            return self._accepted(answer)
        raise self._classify(answer, what=f"message {message.message_id}")

    def send_batch(self, messages: Iterable[OutboundEmail]) -> BatchOutcome:
        """Send dynamic-template messages, up to ``batch_size`` personalizations per request.

        Returns an outcome per message id. A request rejected for some recipients' addresses
        is retried once without them. When a request fails as a whole, later requests are not
        attempted: their messages get a RetryableError (or the same CampaignStopError), which
        is true, since nothing of theirs was sent."""
        outcome: BatchOutcome = {}
        groups: dict[tuple[Any, ...], list[OutboundEmail]] = {}
        seen: set[str] = set()
        for message in messages:
            if message.message_id in seen:
                raise ValueError(f"message {message.message_id} appears twice in the batch")
            seen.add(message.message_id)
            if not message.is_template:
                raise ValueError(
                    f"message {message.message_id}: send_batch is for dynamic templates; "
                    "use send() for rendered messages"
                )
            groups.setdefault(_envelope_key(message), []).append(message)
        chunks = [
            group[start : start + self.batch_size]
            for group in groups.values()
            for start in range(0, len(group), self.batch_size)
        ]
        failure: ChannelError | None = None
        for chunk in chunks:
            if failure is not None:
                for message in chunk:
                    outcome[message.message_id] = _not_attempted(failure)
                continue
            error = self._send_chunk(chunk, outcome)
            # A permanent rejection concerns this request's messages only; throttling, an
            # outage, an unknown outcome or refused credentials would hit the next one too.
            if isinstance(error, RetryableError | UnknownOutcomeError | CampaignStopError):
                failure = error
        return outcome

    def _send_chunk(self, chunk: list[OutboundEmail], outcome: BatchOutcome) -> ChannelError | None:
        """Send one request; record each message's outcome; the whole-request failure if any."""
        what = f"batch of {len(chunk)} starting at message {chunk[0].message_id}"
        for attempt in (1, 2):
            try:
                answer = self._post(build_batch_mail(chunk), what=what)
            except ChannelError as exc:
                error: ChannelError = exc
            else:
                if 200 <= answer.status < 300:
                    result = self._accepted(answer)
                    for message in chunk:
                        outcome[message.message_id] = result
                    return None
                rejected = _rejected_recipients(answer) if attempt == 1 else {}
                if rejected and len(rejected) < len(chunk):
                    for index, reason in rejected.items():
                        message_id = chunk[index].message_id
                        outcome[message_id] = _invalid_address(
                            answer.status, reason, what=f"message {message_id}"
                        )
                    chunk = [m for i, m in enumerate(chunk) if i not in rejected]
                    continue
                error = self._classify(answer, what=what)
            for message in chunk:
                outcome[message.message_id] = error
            return error
        raise AssertionError("unreachable: the second attempt always returns")

    def _post(self, body: dict[str, Any], *, what: str) -> HttpAnswer:
        payload = json.dumps(body, separators=(",", ":")).encode()
        return self._http.post(MAIL_SEND, payload, self._headers, what=what)

    def _accepted(self, answer: HttpAnswer) -> SendResult:
        return SendResult(
            provider_message_id=answer.headers.get("x-message-id"),
            accepted_at=self.clock.now(),
            raw_status=answer.status,
        )

    def _classify(self, answer: HttpAnswer, *, what: str) -> ChannelError:
        errors = _errors(answer)
        detail = "; ".join(
            f"{e['field']}: {e['message']}" if e.get("field") else str(e.get("message"))
            for e in errors
        ) or answer.body[:200].decode(errors="replace")
        if answer.status == 400:
            rejected = _rejected_recipients(answer)
            if rejected:
                return _invalid_address(answer.status, "; ".join(rejected.values()), what=what)
        retry_after = parse_retry_after(answer.headers.get("retry-after"), now=self.clock.now())
        if retry_after is None and answer.status == 429:
            retry_after = _rate_limit_reset(answer.headers.get("x-ratelimit-reset"), self.clock)
        return classify_http_status(
            answer.status, f"{what}: {detail}", retry_after=retry_after, provider="SendGrid"
        )

    def find_sent(self, message_id: str) -> list[ProviderRecord]:
        """Our message ``message_id`` in SendGrid's Email Activity (``GET /v3/messages`` with
        ``query=unique_args['message_id']="..."``: the custom argument every message carries),
        one record per recipient SendGrid took it for; empty when it never got it (or its log
        has not caught up: it lags by minutes). Needs the Email Activity add-on and an API
        key with its read scope. Raises :class:`ProviderLogError`."""
        from python_http_client.exceptions import HTTPError
        from sendgrid import SendGridAPIClient

        client = SendGridAPIClient(self._api_key, host=self._host)
        query = f"unique_args['message_id']=\"{message_id}\""
        try:
            response = client.client.messages.get(
                query_params={"query": query, "limit": 10}, timeout=30
            )
        except HTTPError as exc:
            status = getattr(exc, "status_code", None)
            hint = (
                ": the API key needs Email Activity read access (a SendGrid add-on)"
                if status in (401, 403)
                else ""
            )
            raise ProviderLogError(
                f"SendGrid answered {status} for {ACTIVITY}{hint}", status=status
            ) from None
        except OSError as exc:
            raise ProviderLogError(
                f"SendGrid at {self._host} could not be reached: {getattr(exc, 'reason', exc)}"
            ) from None
        try:
            rows = json.loads(response.body or b"{}").get("messages")
        except (ValueError, UnicodeDecodeError, AttributeError):
            rows = None
        if not isinstance(rows, list):
            raise ProviderLogError(f"SendGrid's {ACTIVITY} answer has no list of messages")
        # Its msg_id is our X-Message-Id (what the dispatcher records) + ".filter...": the
        # first part is kept. No sending time in this list (last_event_time may be an open).
        return [
            ProviderRecord(str(row["msg_id"]).split(".")[0], str(row.get("status") or ""), None)
            for row in rows
            if isinstance(row, dict) and row.get("msg_id")
        ]

    def close(self) -> None:
        self._http.close()


def _rate_limit_reset(value: str | None, clock: Clock) -> float | None:
    """Seconds until SendGrid's X-RateLimit-Reset (a Unix time) on a 429 without Retry-After;
    None when it is missing or not a number."""
    try:
        reset = float(value) if value is not None else None
    except ValueError:
        return None
    if reset is None or not math.isfinite(reset):
        return None
    return max(0.0, reset - clock.now().timestamp())


def _errors(answer: HttpAnswer) -> list[dict[str, Any]]:
    try:
        parsed = json.loads(answer.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return []
    errors = parsed.get("errors") if isinstance(parsed, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _rejected_recipients(answer: HttpAnswer) -> dict[int, str]:
    """Personalization index -> reason, for 400 errors whose field is a recipient address."""
    if answer.status != 400:
        return {}
    rejected: dict[int, str] = {}
    for error in _errors(answer):
        match = _RECIPIENT_FIELD.match(str(error.get("field") or ""))
        if match:
            rejected[int(match.group(1))] = f"{error['field']}: {error.get('message')}"
    return rejected


def _invalid_address(status: int, reason: str, *, what: str) -> RecipientError:
    return RecipientError(str(status), reason, invalid_address=True, status=status, what=what)


def _not_attempted(failure: ChannelError) -> ChannelError:
    if isinstance(failure, CampaignStopError):
        return failure  # the same stop applies to every message
    retry_after = failure.retry_after if isinstance(failure, RetryableError) else None
    return RetryableError(
        f"not attempted: an earlier request of the batch failed ({failure})",
        retry_after=retry_after,
    )
