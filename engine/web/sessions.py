"""Signed session cookies and CSRF tokens for the console.

The cookie holds the user id, their session version, a CSRF token and when it was issued,
signed (itsdangerous, HMAC-SHA256) with a key derived from the engine's secret. It is
HttpOnly, SameSite=Lax, Secure when the console is served over https, and expires
:data:`LIFETIME` after sign-in (checked on the engine's clock, not only by the browser). Every
form carries the CSRF token; a POST whose token is not the cookie's is refused."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

COOKIE = "campaign_console"
LIFETIME = timedelta(hours=12)  # a shift; then sign in again
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class ConsoleSession:
    csrf: str
    issued_at: datetime
    user_id: int | None = None
    version: int = 0

    def signed_in(self, user_id: int, version: int, at: datetime) -> ConsoleSession:
        # A fresh CSRF token at sign-in: a token seen before it (fixation) is worth nothing.
        return ConsoleSession(secrets.token_urlsafe(24), at, user_id, version)

    def valid_csrf(self, submitted: str | None) -> bool:
        return bool(submitted) and hmac.compare_digest(self.csrf, str(submitted))


def new_session(at: datetime) -> ConsoleSession:
    return ConsoleSession(csrf=secrets.token_urlsafe(24), issued_at=at)


class SessionCodec:
    def __init__(self, engine_key: bytes, *, secure: bool) -> None:
        # Derived, so the unsubscribe signer's key is never used for sessions as it is.
        key = hmac.new(engine_key, b"console-session", hashlib.sha256).digest()
        self._serializer = URLSafeSerializer(key, salt="campaign-console")
        self.secure = secure

    def dumps(self, value: ConsoleSession) -> str:
        data: dict[str, Any] = {
            "c": value.csrf,
            "t": int(value.issued_at.timestamp()),
            "u": value.user_id,
            "v": value.version,
        }
        return str(self._serializer.dumps(data))

    def loads(self, raw: str | None, *, at: datetime) -> ConsoleSession | None:
        """The session in ``raw``, or None when it is missing, forged or expired."""
        if not raw:
            return None
        try:
            data = self._serializer.loads(raw)
            issued = datetime.fromtimestamp(int(data["t"]), UTC)
            value = ConsoleSession(
                csrf=str(data["c"]),
                issued_at=issued,
                user_id=None if data.get("u") is None else int(data["u"]),
                version=int(data.get("v", 0)),
            )
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        if at - issued > LIFETIME or issued - at > timedelta(minutes=5):
            return None
        return value

    def cookie_header(self, value: ConsoleSession) -> dict[str, Any]:
        """Arguments for Starlette's ``Response.set_cookie``."""
        return {
            "key": COOKIE,
            "value": self.dumps(value),
            "max_age": int(LIFETIME.total_seconds()),
            "path": "/",
            "httponly": True,
            "samesite": "lax",
            "secure": self.secure,
        }


def signed_out(value: ConsoleSession, at: datetime) -> ConsoleSession:
    return replace(new_session(at), csrf=secrets.token_urlsafe(24))
