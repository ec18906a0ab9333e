"""Identity verification on a claim, and what of a member's account is shown before it.

The agent asks the verification questions (engine/calls/scripts.py) and records the answer
on the claim (``call_tasks.verified_at`` / ``verified_by``). Until then only the fields the
program marks as shown before verification are shown (``programs.shown_before_verification``,
a comma list; NULL: :data:`DEFAULT_SHOWN`); the member's name, number, local time and language
are always shown, as the agent needs them to place the call and greet the member.

Verification belongs to one claim: it counts only while the task is claimed by the agent who
recorded it, from the claim's start (a released or expired claim's verification does not carry
over to the next agent or the next attempt)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from engine.clock import ensure_utc
from engine.db.models import CallTask, Program
from engine.errors import InputError

# Always shown: what the agent needs to dial and greet.
ALWAYS_SHOWN = ("name", "phone", "local_time", "language")
# What the program may choose to show before verification: the account review's fields, the
# recent activity, the earlier contacts with their notes, and the case the call follows up.
GATED = (
    "status",
    "tier",
    "points_balance",
    "points_expiring",
    "points_expire_at",
    "renewal_date",
    "member_since",
    "last_activity_at",
    "account_manager",
    "activity",
    "contacts",
    "case",
)
DEFAULT_SHOWN = ("name", "language", "local_time", "tier")


def parse_shown(text: str | Iterable[str]) -> tuple[str, ...]:
    """A comma list (or names) of fields, checked; ALWAYS_SHOWN names are accepted and kept."""
    names = text.split(",") if isinstance(text, str) else list(text)
    cleaned = [n.strip().lower().replace("-", "_").replace(" ", "_") for n in names]
    cleaned = [n for n in cleaned if n]
    unknown = [n for n in cleaned if n not in GATED and n not in ALWAYS_SHOWN]
    if unknown:
        raise InputError(
            f"unknown account field(s) {', '.join(unknown)}: choose from {', '.join(GATED)} "
            f"({', '.join(ALWAYS_SHOWN)} are always shown)"
        )
    return tuple(dict.fromkeys(cleaned))


def shown_before_verification(program: Program) -> frozenset[str]:
    """The program's fields shown before verification, always-shown ones included."""
    chosen = (
        parse_shown(program.shown_before_verification)
        if program.shown_before_verification is not None
        else DEFAULT_SHOWN
    )
    return frozenset(chosen) | frozenset(ALWAYS_SHOWN)


def is_verified(task: CallTask) -> bool:
    """Whether the current claim's agent recorded a verified identity during this claim."""
    return (
        task.status == "claimed"
        and task.verified_at is not None
        and task.claimed_at is not None
        and task.verified_by is not None
        and task.verified_by == task.claimed_by
        and ensure_utc(task.verified_at) >= ensure_utc(task.claimed_at)
    )


def record_verified(task: CallTask, agent: str, *, at: datetime) -> bool:
    """Record on the claim that ``agent`` verified the member's identity (the caller checked
    that the claim is theirs). False when it was recorded already (nothing changes)."""
    if is_verified(task):
        return False
    task.verified_at = ensure_utc(at)
    task.verified_by = agent
    return True
