"""A case's life, pure: its statuses, the transitions actions make, its due time and the
follow-up standard. No database and no clock: engine/cases/store.py applies them.

Statuses: ``open`` (nobody has worked it yet), ``waiting_on_us``, ``waiting_on_member``,
``resolved`` (with a root cause and a resolution), ``closed``. ``open`` and ``waiting_on_us``
are *on us*: the case has a follow-up call task on someone's list, and the follow-up standard
runs. A case is closed only once resolved, so it always has a root cause.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

from engine.calls.standards import (
    DEFAULT_STANDARD,
    FollowUpStandard,
    add_business_hours,
    business_hours_between,
)
from engine.errors import InputError

Status = Literal["open", "waiting_on_member", "waiting_on_us", "resolved", "closed"]
STATUSES: tuple[str, ...] = get_args(Status)
ACTIVE: frozenset[str] = frozenset({"open", "waiting_on_member", "waiting_on_us"})
ON_US: frozenset[str] = frozenset({"open", "waiting_on_us"})
Action = Literal[
    "assign",
    "note",
    "call",
    "member_contact",  # the member called or texted: the ball is in our court
    "wait_on_member",
    "wait_on_us",
    "resolve",
    "reopen",
    "close",
]
ACTIONS: tuple[str, ...] = get_args(Action)
BUSINESS_DAY_HOURS = 8.0  # 09:00-17:00, engine/calls/standards.py


class CaseStateError(InputError):
    """An action the case's status does not allow (e.g. closing a case not yet resolved)."""


def transition(status: str, action: str) -> str:
    """The status after ``action`` on a case in ``status``, or CaseStateError saying why not."""
    if status not in STATUSES:
        raise CaseStateError(f"unknown case status {status!r}")
    if action not in ACTIONS:
        raise CaseStateError(f"unknown case action {action!r}")
    if action == "note":
        return status  # a note is welcome at any time, even on a closed case
    if action == "reopen":
        if status in ACTIVE:
            raise CaseStateError(f"the case is {status}, not resolved or closed: nothing to reopen")
        return "waiting_on_us"
    if action == "close":
        if status != "resolved":
            raise CaseStateError(
                f"the case is {status}: only a resolved case is closed "
                "(`campaign cases resolve ID --root-cause CODE --resolution TEXT` first)"
            )
        return "closed"
    if status not in ACTIVE:
        raise CaseStateError(f"the case is {status}: reopen it first (`campaign cases reopen ID`)")
    if action == "resolve":
        return "resolved"
    if action == "wait_on_member":
        return "waiting_on_member"
    if action in ("wait_on_us", "member_contact"):
        return "waiting_on_us"
    if action == "call" and status == "open":
        return "waiting_on_us"  # someone has started on it
    return status  # assign; a call on a case already being worked


def due_at(opened_at: datetime, business_days: float, zone: str) -> datetime:
    """When a case opened (or reopened) at ``opened_at`` is due: ``business_days`` business
    days (8 business hours each, program clock ``zone``) later."""
    return add_business_hours(opened_at, business_days * BUSINESS_DAY_HOURS, zone)


def is_overdue(status: str, due: datetime, at: datetime) -> bool:
    return status in ACTIVE and due < at


# --------------------------------------------------------------------------- the standard


@dataclass(frozen=True)
class Moment:
    """One entry of a case's history as the follow-up standard reads it: when, what (an
    action), and the status after it."""

    at: datetime
    action: str
    status_after: str


@dataclass(frozen=True)
class Breach:
    """A breach of the follow-up standard: ``gap`` (no attempt within the standard's business
    hours while the case was on us; ``since`` the last attempt or the moment it came to us,
    ``due`` when the next attempt was due, ``until`` when it came, None: still none) or
    ``too_few_attempts`` (resolved after ``attempts`` follow-up calls, fewer than the minimum;
    ``due`` is the resolution)."""

    kind: Literal["gap", "too_few_attempts"]
    since: datetime
    due: datetime
    until: datetime | None
    attempts: int = 0

    def describe(self) -> str:
        if self.kind == "too_few_attempts":
            return f"resolved after {self.attempts} follow-up call(s)"
        late = "still none" if self.until is None else f"next {self.until:%Y-%m-%d %H:%M}Z"
        return (
            f"no attempt from {self.since:%Y-%m-%d %H:%M}Z by {self.due:%Y-%m-%d %H:%M}Z ({late})"
        )


def follow_up_breaches(
    opened_at: datetime,
    history: Sequence[Moment],
    *,
    at: datetime,
    zone: str,
    standard: FollowUpStandard = DEFAULT_STANDARD,
) -> list[Breach]:
    """Every breach of the follow-up standard in a case's history up to ``at``.

    While a case is on us (open or waiting on us), an attempt (a call logged on it) is due
    within ``standard.within_business_hours`` business hours of the moment it came to us or of
    the previous attempt; a gap longer than that is one breach. A case resolved after fewer
    than ``standard.min_attempts`` follow-up calls is one more (the call that opened it is not
    a follow-up). Waiting on the member stops the clock; the member's answer restarts it.
    """
    limit = standard.within_business_hours
    breaches: list[Breach] = []
    on_us = True
    since = opened_at
    attempts = 0

    def check(until: datetime | None, upto: datetime) -> None:
        if on_us and business_hours_between(since, upto, zone) > limit:
            breaches.append(Breach("gap", since, add_business_hours(since, limit, zone), until))

    for moment in sorted(history, key=lambda m: m.at):
        if moment.at > at:
            break
        after_on_us = moment.status_after in ON_US
        if moment.action == "call":
            check(moment.at, moment.at)
            attempts += 1
            since = moment.at
        elif moment.action == "reopen":
            attempts = 0
            since = moment.at
        elif moment.action == "resolve":
            check(moment.at, moment.at)
            if attempts < standard.min_attempts:
                breaches.append(
                    Breach("too_few_attempts", since, moment.at, moment.at, attempts=attempts)
                )
        elif on_us and not after_on_us:  # now waiting on the member
            check(moment.at, moment.at)
        elif not on_us and after_on_us:
            since = moment.at
        on_us = after_on_us
    check(None, at)
    return breaches
