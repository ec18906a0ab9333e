"""What the dispatcher needs from a provider: the Channel protocol, the messages it sends, the
result it gets back, and the one classification of everything that can go wrong.

Each adapter (sendgrid.py, twilio.py, sink.py) classifies its provider's failures into these
classes exactly once, so the dispatcher decides on a class, never on an HTTP status:

- ``RetryableError``: nothing was sent; try again later (``retry_after`` seconds when known).
- ``RecipientError``: permanent for this recipient (``suppress`` / ``invalid_address``).
- ``CampaignStopError``: credentials or permissions: every further send would fail too.
- ``MessageError``: the provider refused this message's content (a 400 about it, Twilio's
  body too long): permanent for this message, and no sign of trouble at the provider.
- ``UnknownOutcomeError``: the request went out and no answer came back; the message may have
  been sent. Never resend blindly: reconcile from provider events or release explicitly.
- ``ChannelError`` itself: any other permanent failure of this one message.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from engine.errors import EngineError

EMAIL = "email"
SMS = "sms"


@dataclass(frozen=True)
class Attachment:
    """A file sent with an email (a report's CSV): its bytes, name and MIME type."""

    filename: str
    content: bytes
    mime_type: str = "application/octet-stream"
    charset: str | None = None  # of a text attachment's bytes

    def __post_init__(self) -> None:
        if not self.filename or "/" in self.filename or "\\" in self.filename:
            raise ValueError(f"attachment file name {self.filename!r} must be a bare name")
        if not self.content:
            raise ValueError(f"attachment {self.filename} is empty")


@dataclass(frozen=True)
class OutboundEmail:
    """One email to one recipient. Either ``subject`` with ``html``/``text``, or a dynamic
    template (``template_id`` "d-..." with ``dynamic_template_data``)."""

    message_id: str
    to_email: str
    from_email: str
    to_name: str | None = None
    from_name: str | None = None
    reply_to: str | None = None
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    custom_args: Mapping[str, str] = field(default_factory=dict)
    template_id: str | None = None
    dynamic_template_data: Mapping[str, Any] | None = None
    attachments: tuple[Attachment, ...] = ()

    def __post_init__(self) -> None:
        if not self.message_id:
            raise ValueError("OutboundEmail needs a message_id")
        if self.template_id is not None:
            if not self.template_id.startswith("d-"):
                raise ValueError(
                    f"message {self.message_id}: template_id {self.template_id!r} is not a "
                    "dynamic template id (d-...)"
                )
        elif not self.subject or not (self.html or self.text):
            raise ValueError(
                f"message {self.message_id}: an email needs a subject and html or text, "
                "or a dynamic template_id"
            )
        other = self.custom_args.get("message_id")
        if other is not None and other != self.message_id:
            raise ValueError(
                f"message {self.message_id}: custom_args carries another message_id {other!r}"
            )
        # Our id rides along in custom_args so provider events can be matched back to it.
        args = {str(k): str(v) for k, v in self.custom_args.items()}
        args["message_id"] = self.message_id
        object.__setattr__(self, "custom_args", args)
        object.__setattr__(self, "headers", dict(self.headers))
        object.__setattr__(self, "categories", tuple(self.categories))
        object.__setattr__(self, "attachments", tuple(self.attachments))

    @property
    def is_template(self) -> bool:
        return self.template_id is not None


@dataclass(frozen=True)
class OutboundSms:
    """One text message. ``from_number``/``messaging_service_sid`` override the channel's
    configured sender; ``status_callback`` is our webhook URL carrying our message id."""

    message_id: str
    to: str
    body: str
    from_number: str | None = None
    messaging_service_sid: str | None = None
    status_callback: str | None = None

    def __post_init__(self) -> None:
        if not self.message_id:
            raise ValueError("OutboundSms needs a message_id")
        if self.from_number and self.messaging_service_sid:
            raise ValueError(
                f"message {self.message_id}: give from_number or messaging_service_sid, not both"
            )


Outbound = OutboundEmail | OutboundSms


@dataclass(frozen=True)
class SendResult:
    """The provider accepted the message. ``provider_message_id`` is what its events will
    name (SendGrid X-Message-Id, Twilio SM... sid, the sink's file name)."""

    provider_message_id: str | None
    accepted_at: datetime
    raw_status: int


@dataclass(frozen=True)
class ProviderRecord:
    """A message in the provider's own log (SendGrid's Email Activity, Twilio's Messages
    list): it accepted it. What `campaign outbox reconcile` settles unknown messages by."""

    provider_message_id: str
    status: str  # the provider's word: processed, delivered, not_delivered; queued, sent...
    at: datetime | None  # when it took it, as far as its log says


@runtime_checkable
class Channel(Protocol):
    name: str
    kind: str

    def send(self, message: OutboundEmail | OutboundSms) -> SendResult:
        """Send one message of this channel's kind; raise a ChannelError subclass on failure."""
        ...

    def close(self) -> None: ...


# ---------------------------------------------------------------- error classification


class ChannelError(EngineError):
    """A permanent failure of one message that fits no narrower class."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ProviderLogError(ChannelError):
    """The provider's log could not be read (refused, unreachable, answered nonsense)."""


class RetryableError(ChannelError):
    """Nothing was sent: throttled (429), provider trouble (5xx) or no connection."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class RecipientError(ChannelError):
    """Permanent for this recipient; ``suppress`` asks for a suppression entry (opted out),
    ``invalid_address`` marks the address itself as unusable."""

    def __init__(
        self,
        code: str,
        reason: str,
        *,
        suppress: bool = False,
        invalid_address: bool = False,
        status: int | None = None,
        what: str | None = None,
    ) -> None:
        prefix = f"{what}: " if what else ""
        super().__init__(f"{prefix}recipient rejected ({code}): {reason}", status=status)
        self.code = code
        self.reason = reason
        self.suppress = suppress
        self.invalid_address = invalid_address


class MessageError(ChannelError):
    """The provider refused this message itself (its content, its size): it will refuse it
    again, and it says nothing about the provider's health (never a provider failure)."""


class CampaignStopError(ChannelError):
    """Credentials or permissions are wrong (401/403): stop the run, every send would fail."""


class UnknownOutcomeError(ChannelError):
    """The request was sent and no answer came: the message may or may not have gone."""


class DuplicateSendError(ChannelError):
    """A message id was already sent through this channel (the sink found its file)."""


def wrong_kind(channel: str, kind: str, message: Outbound) -> ChannelError:
    return ChannelError(
        f"channel {channel} sends {kind}; message {message.message_id} is {type(message).__name__}"
    )


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110).
    Unparseable values are ignored (None) rather than trusted."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT by definition
        return None
    return max(0.0, (when - now).total_seconds())


def classify_http_status(
    status: int, detail: str, *, retry_after: float | None, provider: str
) -> ChannelError:
    """The status-only part of the table, shared by both HTTP adapters. Recipient-specific
    4xx answers are recognised by the adapter before it falls back on this."""
    if status == 429:
        return RetryableError(
            f"{provider} throttled the request (429): {detail}",
            retry_after=retry_after,
            status=status,
        )
    if status >= 500:
        return RetryableError(
            f"{provider} answered {status}: {detail}", retry_after=retry_after, status=status
        )
    if status in (401, 403):
        what = "credentials were refused" if status == 401 else "permission denied"
        return CampaignStopError(
            f"{provider} {what} ({status}): {detail}; check the API key/account settings "
            "before resuming the run",
            status=status,
        )
    if status in MESSAGE_STATUSES:
        return MessageError(f"{provider} rejected the message ({status}): {detail}", status=status)
    return ChannelError(f"{provider} rejected the message ({status}): {detail}", status=status)


# Answers about the request itself: malformed, too large, unprocessable.
MESSAGE_STATUSES = frozenset({400, 413, 422})
