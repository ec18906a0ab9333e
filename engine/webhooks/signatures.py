"""Is this request really from the provider? The provider checks use their official helpers.

- SendGrid signs its Event Webhook with ECDSA (P-256, SHA-256) over the timestamp header
  followed by the raw body; ``sendgrid.helpers.eventwebhook.EventWebhook`` verifies it with the
  public key shown in the SendGrid console. A timestamp further than the tolerance from now
  (either way) is refused, so a captured request cannot be replayed later.
- Twilio signs with HMAC-SHA1 of the auth token over the full URL it requested plus the sorted
  form parameters; ``twilio.request_validator.RequestValidator`` checks it. The URL is the one
  Twilio was given (``settings.public_url`` + path + query), not the one this process sees: behind
  a TLS-terminating proxy we are reached over http on another host and port.
- A program's own systems push activity events with a shared secret
  (``CAMPAIGN_EVENTS_WEBHOOK_TOKEN``) as ``Authorization: Bearer <token>``, compared in
  constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Iterator
from datetime import datetime

from sendgrid.helpers.eventwebhook import EventWebhook
from twilio.request_validator import RequestValidator

from engine.errors import ConfigError, EngineError

SENDGRID_SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"
AUTHORIZATION_HEADER = "Authorization"


class SignatureError(EngineError):
    """The request is not provably from the provider (or is too old): answer 403."""


class _FormParams:
    """Form parameters with repeated keys, in the shape RequestValidator reads (getlist)."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for key, value in pairs:
            self._values.setdefault(key, []).append(value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __bool__(self) -> bool:
        return bool(self._values)

    def getlist(self, key: str) -> list[str]:
        return self._values.get(key, [])


class SendGridVerifier:
    """Verifies SendGrid's signed Event Webhook requests."""

    def __init__(self, public_key: str, *, tolerance_seconds: int) -> None:
        try:
            self._helper = EventWebhook(public_key.strip())
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                "SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid public key (paste the base64 "
                f"'Verification Key' from SendGrid's signed event webhook settings): {exc}"
            ) from exc
        self.tolerance_seconds = tolerance_seconds

    def verify(
        self, body: bytes, signature: str | None, timestamp: str | None, *, now: datetime
    ) -> None:
        """Return quietly for a genuine, fresh request; raise SignatureError otherwise."""
        if not signature or not timestamp:
            raise SignatureError("the SendGrid signature or timestamp header is missing")
        stamp = timestamp.strip()
        if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
            raise SignatureError("the SendGrid timestamp header is not a unix time")
        age = now.timestamp() - int(stamp)
        if abs(age) > self.tolerance_seconds:
            raise SignatureError(
                f"the SendGrid timestamp is {int(age)} s from now "
                f"(tolerance {self.tolerance_seconds} s): stale or replayed"
            )
        try:
            payload = body.decode("utf-8")
            base64.b64decode(signature, validate=True)
            valid = self._helper.verify_signature(payload, signature, stamp)
        except (UnicodeDecodeError, binascii.Error, ValueError, TypeError):
            valid = False
        if not valid:
            raise SignatureError("the SendGrid signature does not match the body")


class TwilioVerifier:
    """Verifies ``X-Twilio-Signature`` against the public URL Twilio requested."""

    def __init__(self, auth_token: str, public_url: str) -> None:
        self._validator = RequestValidator(auth_token)
        self.public_url = public_url.rstrip("/")

    def url_for(self, path: str, query: str) -> str:
        return f"{self.public_url}{path}" + (f"?{query}" if query else "")

    def verify(
        self, path: str, query: str, params: Iterable[tuple[str, str]], signature: str | None
    ) -> None:
        if not signature:
            raise SignatureError(f"the {TWILIO_SIGNATURE_HEADER} header is missing")
        try:
            valid = self._validator.validate(
                self.url_for(path, query), _FormParams(params), signature
            )
        except (ValueError, TypeError, UnicodeError):
            valid = False
        if not valid:
            raise SignatureError(
                f"the Twilio signature does not match {self.url_for(path, query)} and the "
                "form parameters (is CAMPAIGN_PUBLIC_URL the URL Twilio calls?)"
            )


class BearerTokenVerifier:
    """Checks ``Authorization: Bearer <token>`` against the shared secret of the events webhook.

    Both sides are hashed before the constant-time comparison, so neither the token's content
    nor its length shows in the time an answer takes."""

    def __init__(self, token: str) -> None:
        self._expected = hashlib.sha256(token.encode("utf-8")).digest()

    def verify(self, authorization: str | None) -> None:
        if not authorization:
            raise SignatureError(f"the {AUTHORIZATION_HEADER} header is missing")
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer":
            raise SignatureError(f"the {AUTHORIZATION_HEADER} header is not a Bearer token")
        # Starlette decodes header bytes as latin-1: encoding back gives the bytes as sent.
        digest = hashlib.sha256(given.strip().encode("latin-1", "replace")).digest()
        if not hmac.compare_digest(digest, self._expected):
            raise SignatureError("the Bearer token is not the expected token")
