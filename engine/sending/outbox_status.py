"""The outbox state machine: which status may follow which (pure, no database).

    queued --claim--> sending --accepted--> sent --events--> delivered | bounced | failed
    queued --gate refuses--> skipped (status_reason says why)
    sending --retryable error--> queued (later not_before)
    sending --permanent error--> failed
    sending --crash / timeout after the request went--> unknown
    sending --lease ran out before its batch was handed to the sending thread--> queued
    unknown --provider event or `outbox resolve --sent`--> sent (or further)
    unknown --`outbox resolve --resend`--> queued;  --`--failed`--> failed
    failed, never sent (no sent_at) --`outbox requeue`--> queued (an operator's decision only)

Provider events arrive late, out of order and more than once, so they only ever move a message
forward (:func:`forward`): a ``delivered`` that arrives after ``bounced`` changes nothing, and
a replayed event is a no-op. The dispatcher, the webhooks and the admin commands all ask
:func:`can_move` before they write a status.
"""

from __future__ import annotations

QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
DELIVERED = "delivered"
BOUNCED = "bounced"
FAILED = "failed"
SKIPPED = "skipped"
UNKNOWN = "unknown"

STATUSES = (QUEUED, SENDING, SENT, DELIVERED, BOUNCED, FAILED, SKIPPED, UNKNOWN)
# Nothing ever leaves these.
FINAL = frozenset({DELIVERED, BOUNCED, FAILED, SKIPPED})
# The message (may have) reached the provider: never queue these again on our own.
LEFT_US = frozenset({SENT, DELIVERED, BOUNCED, UNKNOWN})

_MOVES: dict[str, frozenset[str]] = {
    QUEUED: frozenset({SENDING, SKIPPED}),
    SENDING: frozenset({SENT, QUEUED, FAILED, SKIPPED, UNKNOWN, DELIVERED, BOUNCED}),
    UNKNOWN: frozenset({SENT, DELIVERED, BOUNCED, FAILED, QUEUED}),
    SENT: frozenset({DELIVERED, BOUNCED, FAILED}),
    DELIVERED: frozenset(),
    BOUNCED: frozenset(),
    FAILED: frozenset(),
    SKIPPED: frozenset(),
}

# How far along a message is, for provider events (which only move forward).
_RANK = {QUEUED: 0, SENDING: 1, UNKNOWN: 1, SENT: 2, DELIVERED: 3, BOUNCED: 3, FAILED: 3}


def can_move(current: str, new: str) -> bool:
    """True when ``current`` -> ``new`` is a transition of the state machine above."""
    if current not in _MOVES or new not in _MOVES:
        raise ValueError(f"unknown outbox status {current!r} or {new!r}")
    return new in _MOVES[current]


def can_requeue(current: str) -> bool:
    """True when an operator may queue a message in ``current`` again in bulk (`outbox
    requeue`): a failed one, provided it never went (the caller checks ``sent_at``)."""
    return current == FAILED


def forward(current: str, reported: str) -> str | None:
    """The status a provider event reporting ``reported`` moves a message in ``current`` to,
    or None when it changes nothing (older news, a duplicate, or a message we never sent)."""
    if current in (QUEUED, SKIPPED) or current in FINAL:
        return None
    if _RANK[reported] <= _RANK[current] or not can_move(current, reported):
        return None
    return reported


__all__ = [
    "BOUNCED",
    "DELIVERED",
    "FAILED",
    "FINAL",
    "LEFT_US",
    "QUEUED",
    "SENDING",
    "SENT",
    "SKIPPED",
    "STATUSES",
    "UNKNOWN",
    "can_move",
    "can_requeue",
    "forward",
]
