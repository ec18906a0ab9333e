"""Signed one-click unsubscribe links: ``{public_url}/u/{token}``.

A token is ``<participant id>.<channel>.<signature>``: the signature is HMAC-SHA256 over the
id and channel, base64url without padding, so the token is URL-safe and any change to any
part of it is detected. The id is not secret (it only names whom the link unsubscribes); the
key is. The key is ``settings.secret_key`` when set, else a random key generated once and kept
in ``engine_settings`` under ``unsubscribe_secret``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine.db.models import SUPPRESSION_CHANNELS, EngineSetting
from engine.errors import InputError
from engine.settings import Settings

SETTING_KEY = "unsubscribe_secret"
_SIGNATURE_BYTES = 20  # 160 bits: far beyond guessing, and a shorter link


class InvalidTokenError(InputError):
    """An unsubscribe token that was altered, forged or is not a token at all."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class UnsubscribeSigner:
    """Signs and verifies (participant id, channel) tokens with one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("an unsubscribe signing key needs at least 16 bytes")
        self._key = key

    def _signature(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest()
        return _b64(digest[:_SIGNATURE_BYTES])

    def sign(self, participant_id: int, channel: str = "email") -> str:
        if channel not in SUPPRESSION_CHANNELS:
            raise ValueError(f"unknown channel {channel!r}")
        payload = f"{int(participant_id)}.{channel}"
        return f"{payload}.{self._signature(payload)}"

    def verify(self, token: str) -> tuple[int, str]:
        """(participant id, channel) of a genuine token; InvalidTokenError for anything else."""
        parts = token.split(".")
        if len(parts) != 3 or not parts[0].isascii() or not parts[0].isdigit():
            raise InvalidTokenError("not an unsubscribe token")
        payload = f"{parts[0]}.{parts[1]}"
        if not payload.isascii() or not hmac.compare_digest(self._signature(payload), parts[2]):
            raise InvalidTokenError("the unsubscribe token's signature does not match")
        if parts[1] not in SUPPRESSION_CHANNELS or str(int(parts[0])) != parts[0]:
            raise InvalidTokenError("not an unsubscribe token")
        return int(parts[0]), parts[1]


def signing_key(session: Session, settings: Settings) -> bytes:
    """The key that signs unsubscribe tokens: derived from ``settings.secret_key`` when set,
    else generated on first use and stored in ``engine_settings``. Two processes starting at
    once both insert with ON CONFLICT DO NOTHING and then read back the one row that won."""
    if settings.secret_key:
        # Derived, not used as is, so the same secret can sign other things independently.
        return hmac.new(settings.secret_key.encode(), b"unsubscribe", hashlib.sha256).digest()
    stored = _stored_key(session)
    if stored is None:
        values = {"key": SETTING_KEY, "value": _b64(secrets.token_bytes(32))}
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        session.execute(
            insert(EngineSetting).values(**values).on_conflict_do_nothing(index_elements=["key"])
        )
        stored = _stored_key(session)
        if stored is None:  # pragma: no cover - the row was just inserted or already there
            raise RuntimeError("the unsubscribe key could not be stored")
    return base64.urlsafe_b64decode(stored + "=" * (-len(stored) % 4))


def _stored_key(session: Session) -> str | None:
    return session.scalar(select(EngineSetting.value).where(EngineSetting.key == SETTING_KEY))


def signer_for(session: Session, settings: Settings) -> UnsubscribeSigner:
    return UnsubscribeSigner(signing_key(session, settings))


def unsubscribe_url(settings: Settings, token: str) -> str:
    return f"{settings.public_url.rstrip('/')}/u/{token}"
