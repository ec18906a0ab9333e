"""SMS through Twilio's 2010 Messages API with the official SDK.

The SDK builds every URL on ``https://api.twilio.com`` (``Domain.absolute_url``); a
``TwilioHttpClient`` subclass rewrites that origin to CAMPAIGN_TWILIO_BASE_URL so tests and
benchmarks reach a local server. TwilioHttpClient keeps one ``requests.Session`` for the
client's life, so connections are pooled and kept alive.

The SDK's TwilioRestException carries status and code but not the response headers, so the
HTTP client remembers the last response per thread: that is where Retry-After comes from.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from engine.channels.base import (
    SMS,
    ChannelError,
    MessageError,
    Outbound,
    OutboundSms,
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

TWILIO_ORIGIN = "https://api.twilio.com"

# Twilio error codes that are final for this recipient (https://www.twilio.com/docs/errors).
SUPPRESS_CODES = {21610: "the recipient replied STOP (unsubscribed)"}
INVALID_ADDRESS_CODES = {
    21211: "invalid 'To' phone number",
    21401: "invalid phone number",
    21614: "'To' number is not a mobile number",
}
# The message itself was refused: it will be again, and the provider is fine.
MESSAGE_CODES = {
    21602: "the message body is empty",
    21617: "the message body is too long (over 1600 characters)",
    21619: "the message has no body or media",
}
OTHER_RECIPIENT_CODES = {
    21408: "sending to this region is not enabled",
    21612: "the 'To' number cannot be reached from this sender",
}


class RedirectingHttpClient(TwilioHttpClient):
    """TwilioHttpClient aimed at ``base_url`` instead of api.twilio.com, with separate connect
    and read timeouts, remembering each thread's last response headers."""

    def __init__(
        self,
        base_url: str = TWILIO_ORIGIN,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        pool_size: int = 256,
    ) -> None:
        super().__init__(pool_connections=True, timeout=read_timeout)
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"CAMPAIGN_TWILIO_BASE_URL is not an http(s) URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._redirect = self.base_url != TWILIO_ORIGIN
        # requests takes (connect, read); the parent only checks a float, so set it after.
        self.timeout = (connect_timeout, read_timeout)
        # Connections are opened on demand; this only caps how many are kept for reuse. Every
        # request in flight holds one (engine/sending/in_flight.py: up to dispatch_max_in_flight per
        # worker), and one returned to a full pool would be closed, not kept alive.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._local = threading.local()

    def rewrite(self, url: str) -> str:
        if not self._redirect:
            return url
        parts = urlsplit(url)
        if not (parts.hostname or "").endswith("twilio.com"):
            return url
        base = urlsplit(self.base_url)
        return urlunsplit(
            (base.scheme, base.netloc, base.path + parts.path, parts.query, parts.fragment)
        )

    def request(
        self,
        method: str,
        url: str,
        params: Any = None,
        data: Any = None,
        headers: Any = None,
        auth: Any = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Any:
        self._local.headers = {}
        response = super().request(
            method,
            self.rewrite(url),
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )
        self._local.headers = {k.lower(): v for k, v in (response.headers or {}).items()}
        return response

    @property
    def last_headers(self) -> dict[str, str]:
        headers: dict[str, str] = getattr(self._local, "headers", {})
        return headers

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


class TwilioChannel:
    name = "twilio"
    kind = SMS

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        messaging_service_sid: str | None = None,
        from_number: str | None = None,
        base_url: str = TWILIO_ORIGIN,
        clock: Clock | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
    ) -> None:
        if not account_sid or not auth_token:
            raise ConfigError("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must both be set")
        if not (messaging_service_sid or from_number):
            raise ConfigError(
                "Twilio needs a sender: set TWILIO_MESSAGING_SERVICE_SID or CAMPAIGN_SMS_FROM"
            )
        self.messaging_service_sid = messaging_service_sid
        self.from_number = from_number
        self.clock = clock or SystemClock()
        self.http = RedirectingHttpClient(
            base_url, connect_timeout=connect_timeout, read_timeout=read_timeout
        )
        self._client = Client(account_sid, auth_token, http_client=self.http)
        # The SDK imports its Messages resource on first use (80 ms here): do it now, so that
        # the first request goes out when the rate limit's slot comes, not 80 ms after it.
        self._messages = self._client.messages

    def send(self, message: Outbound) -> SendResult:
        if not isinstance(message, OutboundSms):
            raise wrong_kind(self.name, self.kind, message)
        what = f"message {message.message_id}"
        sender: dict[str, str] = {}
        if message.from_number or message.messaging_service_sid:
            if message.from_number:
                sender["from_"] = message.from_number
            else:
                sender["messaging_service_sid"] = message.messaging_service_sid or ""
        elif self.messaging_service_sid:
            sender["messaging_service_sid"] = self.messaging_service_sid
        else:
            sender["from_"] = self.from_number or ""
        extra = {"status_callback": message.status_callback} if message.status_callback else {}
        try:
            created = self._messages.create(to=message.to, body=message.body, **sender, **extra)
        except TwilioException as exc:
            raise self._classify(exc, what=what) from exc
        except requests.exceptions.RequestException as exc:
            raise _transport_error(exc, what=what, base_url=self.http.base_url) from exc
        return SendResult(
            provider_message_id=created.sid, accepted_at=self.clock.now(), raw_status=201
        )

    def find_sent(self, to: str, body: str, since: datetime) -> list[ProviderRecord]:
        """Messages to ``to`` with text ``body`` in Twilio's Messages list since ``since``
        (``GET .../Messages.json?To=...&DateSent>=...``): what it took. Twilio keeps no
        argument of ours on a message, so the number, the text and the time tell it apart.
        Raises :class:`ProviderLogError`."""
        try:
            found = self._messages.list(to=to, date_sent_after=since, page_size=100, limit=1000)
        except TwilioException as exc:
            status = getattr(exc, "status", None)
            raise ProviderLogError(
                f"Twilio answered {status} for the Messages list: {exc}", status=status
            ) from None
        except requests.exceptions.RequestException as exc:
            raise ProviderLogError(f"Twilio could not be reached: {exc}") from None
        return [
            ProviderRecord(str(m.sid), str(m.status or ""), m.date_sent or m.date_created)
            for m in found
            if (m.body or "") == body and m.sid
        ]

    def _classify(self, exc: TwilioException, *, what: str) -> ChannelError:
        status = getattr(exc, "status", None)
        code = getattr(exc, "code", None)
        text = str(getattr(exc, "msg", None) or getattr(exc, "detail", None) or exc)
        detail = f"{what}: Twilio error {code}: {text}"
        if not isinstance(status, int):
            return ChannelError(detail)
        if code in SUPPRESS_CODES:
            return RecipientError(
                str(code),
                f"{SUPPRESS_CODES[code]}: {text}",
                suppress=True,
                status=status,
                what=what,
            )
        if code in INVALID_ADDRESS_CODES:
            return RecipientError(
                str(code),
                f"{INVALID_ADDRESS_CODES[code]}: {text}",
                invalid_address=True,
                status=status,
                what=what,
            )
        if code in OTHER_RECIPIENT_CODES:
            return RecipientError(
                str(code), f"{OTHER_RECIPIENT_CODES[code]}: {text}", status=status, what=what
            )
        if code in MESSAGE_CODES:
            return MessageError(f"{detail} ({MESSAGE_CODES[code]})", status=status)
        retry_after = parse_retry_after(
            self.http.last_headers.get("retry-after"), now=self.clock.now()
        )
        if code == 20429:  # Twilio's "too many requests", whatever the status says
            status = 429
        return classify_http_status(status, detail, retry_after=retry_after, provider="Twilio")

    def close(self) -> None:
        self.http.close()


def _transport_error(
    exc: requests.exceptions.RequestException, *, what: str, base_url: str
) -> ChannelError:
    """Before the request went out (no connection) -> retryable; after -> unknown outcome."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return RetryableError(f"{what}: connecting to {base_url} timed out: {exc}")
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return UnknownOutcomeError(
            f"{what}: no answer from {base_url} after the request was sent; it may have been "
            "accepted: not resending"
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)  # MaxRetryError wraps the cause
        if isinstance(
            reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
        ):
            return RetryableError(f"{what}: could not connect to {base_url}: {reason}")
        return UnknownOutcomeError(
            f"{what}: the connection to {base_url} broke after the request was sent ({exc}); "
            "it may have been accepted: not resending"
        )
    return ChannelError(f"{what}: request to {base_url} failed: {exc}")
