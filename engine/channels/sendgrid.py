"""Email through SendGrid's v3 Mail Send API.

Request bodies are what the official SDK's helpers (``sendgrid.helpers.mail``) make, so the
JSON is what SendGrid's own library would send: batches are built with the helpers, single
messages as plain dicts checked against them in the tests (see build_mail). The transport is
urllib3 with a keep-alive connection per thread (engine/channels/http_transport.py): the SDK's
python_http_client opens a new connection for every request, which costs several times the
throughput (bench/bench_email_transport.py).

Two SendGrid facts shape the body: the contract types message-level ``custom_args`` as a
string, so our message id travels in each personalization's ``custom_args`` (which is also
where SendGrid scopes it per recipient); and per-recipient headers (List-Unsubscribe carries a
per-recipient URL) go in the personalization too, so a batch keeps them apart.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sendgrid.helpers.mail import (
    Attachment,
    Category,
    CustomArg,
    Disposition,
    FileContent,
    FileName,
    FileType,
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
from engine.channels.http_transport import HttpAnswer, PooledHttpClient
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
    if message.attachments:
        body["attachments"] = [
            {
                "content": base64.b64encode(a.content).decode("ascii"),
                "type": a.mime_type,
                "filename": a.filename,
                "disposition": "attachment",
            }
            for a in message.attachments
        ]
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
    # The helper inserts each at the front: add them last first to keep their order.
    for attachment in reversed(message.attachments):
        mail.add_attachment(
            Attachment(
                FileContent(base64.b64encode(attachment.content).decode("ascii")),
                FileName(attachment.filename),
                FileType(attachment.mime_type),
                Disposition("attachment"),
            )
        )
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
        return self._http.post(MAIL_SEND, _json(body), self._headers, what=what)

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


def _json(body: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON of a request body. orjson costs a sixth of json.dumps here (a
    tenth of the channel's own CPU per message); json.dumps takes what orjson refuses (a lone
    surrogate in a text), escaping it."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:
        return json.dumps(body, separators=(",", ":")).encode()


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
