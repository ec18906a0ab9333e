"""What the engine's working code counts, in its own words: one call per event, so that the
dispatcher and the tick carry one line each, not the bookkeeping."""

from __future__ import annotations

from engine.channels.base import (
    CampaignStopError,
    ChannelError,
    MessageError,
    RecipientError,
    RetryableError,
    UnknownOutcomeError,
)
from engine.metrics.counters import Counters
from engine.metrics.names import (
    MESSAGES_SENT,
    PROVIDER_ERRORS,
    RATE_LIMIT_WAIT_SECONDS,
    RATE_LIMIT_WAITS,
    RUNS_AUTO_PAUSED,
)

# Most specific first: the classes the adapters sort every provider answer into
# (engine/channels/base.py).
_ERROR_CLASSES: tuple[tuple[type[ChannelError], str], ...] = (
    (RetryableError, "retryable"),
    (RecipientError, "recipient"),
    (MessageError, "message"),
    (CampaignStopError, "campaign"),
    (UnknownOutcomeError, "unknown_outcome"),
)


def error_class(error: ChannelError) -> str:
    for kind, name in _ERROR_CLASSES:
        if isinstance(error, kind):
            return name
    return "other"


def sent(counters: Counters, channel: str, count: int) -> None:
    counters.add(MESSAGES_SENT, count, channel=channel)


def provider_error(counters: Counters, channel: str, error: ChannelError) -> None:
    counters.add(PROVIDER_ERRORS, channel=channel, error_class=error_class(error))


def rate_limit_wait(counters: Counters, channel: str, seconds: float) -> None:
    if seconds > 0:
        counters.add(RATE_LIMIT_WAITS, channel=channel)
        counters.add(RATE_LIMIT_WAIT_SECONDS, seconds, channel=channel)


def auto_paused(counters: Counters, by: str, runs: int = 1) -> None:
    counters.add(RUNS_AUTO_PAUSED, runs, by=by)


__all__ = ["auto_paused", "error_class", "provider_error", "rate_limit_wait", "sent"]
