"""The rate limit each send counts against: one per channel and sender (#4).

A provider limits each sender, so the dispatcher paces every channel by its sender, and
``campaign send-test`` takes its one slot of the same limit. On SQLite (one dispatcher at a
time) the limit is the process's own token bucket (engine/sending/ratelimit.py); on
PostgreSQL it is shared through the database by every dispatcher, on any machine
(engine/sending/shared_ratelimit.py).
"""

from __future__ import annotations

from email.utils import parseaddr

from sqlalchemy import Engine

from engine.channels.base import Channel
from engine.sending.ratelimit import SlotLimiter, TokenBucket
from engine.sending.shared_ratelimit import SharedTokenBucket
from engine.settings import Settings


def burst(rate: float) -> float:
    """At 10+/s a half-slot tolerance lets the sender catch up a slot it reached late (a sleep
    that overslept on a busy machine) instead of losing that time for good (the shared limit:
    use a slot up to half a slot late), while any 1-second window still holds at most
    rate + 1 messages. Slower rates: strictly evenly spaced."""
    return 1.5 if rate >= 10 else 1.0


def rate_key(kind: str, channel: Channel | None, settings: Settings) -> str:
    """The limit a channel's sends count against: a provider limits each sender, so the
    channel and its sender: the From address of every email, Twilio's messaging service (it
    sends through it when set) else its from number. The file sink has no sender."""
    name = channel.name if channel is not None else "none"
    sender: str | None
    if kind == "email":
        sender = (parseaddr(settings.email_from)[1] or settings.email_from).lower()
    else:
        sender = getattr(channel, "messaging_service_sid", None) or getattr(
            channel, "from_number", None
        )
    return f"{kind}:{name}:{sender}" if sender and name != "sink" else f"{kind}:{name}"


def configured_rate(kind: str, settings: Settings) -> float:
    """Messages per second the settings allow ``kind`` (per sender)."""
    return settings.dispatch_email_rate if kind == "email" else settings.dispatch_sms_rate


def sender_limit(
    engine: Engine | None, kind: str, channel: Channel | None, settings: Settings
) -> SlotLimiter:
    """The rate limit of ``kind`` sent through ``channel``. SQLite (no ``engine``): one
    dispatcher at a time, so this process's token bucket is the whole limit. PostgreSQL: the
    limit shared through the database (``engine`` gives it connections of its own)."""
    rate = configured_rate(kind, settings)
    if engine is None:
        return TokenBucket(rate, burst=burst(rate))
    return SharedTokenBucket(engine, rate_key(kind, channel, settings), rate, burst=burst(rate))


__all__ = ["burst", "configured_rate", "rate_key", "sender_limit"]
