"""Identity verification on a claim, and what of a member's account is shown before it.

The agent asks the verification questions (engine/calls/scripts.py) and records the answer
on the claim (``call_tasks.verified_at`` / ``verified_by``). Until then only the fields the
program marks as shown before verification are shown (``programs.shown_before_verification``,
a comma list; NULL: :data:`DEFAULT_SHOWN`); the member's name, number, local time and language
are always shown, as the agent needs them to place the call and greet the member.

Verification belongs to one claim: it counts only while the task is claimed by the agent who
recorded it, from the claim's start (a released or expired claim's verification does not carry
over to the next agent or the next attempt).

:func:`gate_for` is the rule's one place: the console's call sheet (engine/web/pages.py) and
the terminal's (`calls next`, `calls verify`) both show what it lets through, and
:func:`verify_claim` records verification for both, with the same refusals and audit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, select

from engine.calls.held_claim import HELD_CONDITIONS, HELD_ORDER, held_claim_params
from engine.clock import ensure_utc
from engine.errors import InputError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from engine.calls.scripts import CallSheet
    from engine.db.models import CallTask

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


def shown_before_verification(program: Any) -> frozenset[str]:
    """The program's (a programs row's) fields shown before verification, always-shown ones
    included."""
    chosen = (
        parse_shown(program.shown_before_verification)
        if program.shown_before_verification is not None
        else DEFAULT_SHOWN
    )
    return frozenset(chosen) | frozenset(ALWAYS_SHOWN)


def is_verified(task: Any) -> bool:
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


class NotYourTask(InputError):
    """The task is not the agent's live claim (someone else's, or expired)."""


def held_claim(session: Session, agent: str, at: datetime) -> CallTask | None:
    """The agent's live claim (the one `calls next` would give back), if any."""
    return session.scalar(held_claim_query(), held_claim_params(agent, at))


@cache
def held_claim_query() -> Select[CallTask]:
    """:func:`held_claim`'s query, for a caller that joins what it reads with the claim; run
    it with :func:`held_claim_params`. Built once (every page and form of an agent asks it):
    building it cost more than running it."""
    from engine.db.models import CallTask  # the ORM: the call sheet reads rows without it

    return select(CallTask).where(*HELD_CONDITIONS).order_by(HELD_ORDER).limit(1)


def own_claim(session: Session, task_id: int, agent: str, at: datetime) -> CallTask:
    task = held_claim(session, agent, at)
    if task is None or task.id != task_id:
        raise NotYourTask(
            f"task {task_id} is not yours: take it with Next call "
            "(`campaign calls next`) first (another agent's task, or your claim expired)"
        )
    return task


def verify_claim(
    session: Session, task_id: int, agent: str, *, at: datetime, address: str | None = None
) -> CallTask:
    """Record that ``agent`` verified the member of ``task_id``, their own live claim
    (:class:`NotYourTask` otherwise, nothing recorded); audited once, in the console's audit
    table, whether from the console's Verified button or `campaign calls verify`."""
    from engine.db.session import take_write_lock
    from engine.web import audit  # the console's audit table (no web framework imported)

    take_write_lock(session)
    task = own_claim(session, task_id, agent, at)
    if record_verified(task, agent, at=at):
        audit.record(
            session,
            audit.IDENTITY_VERIFIED,
            agent,
            at=at,
            address=address,
            actor=agent,
            detail=f"task {task_id}",
        )
    return task


@dataclass(frozen=True)
class Gate:
    """What of the member's account a call sheet may show now."""

    verified: bool
    verified_at: str | None  # HH:MM in the agent's zone
    shown: frozenset[str]
    account: dict[str, Any]  # the account review's fields the agent may see now
    hidden: tuple[str, ...]  # what verification would show

    def shows(self, name: str) -> bool:
        return self.verified or name in self.shown

    def with_account(self, sheet: CallSheet) -> Gate:
        shown = {k: v for k, v in sheet.account.items() if self.shows(k)}
        return replace(self, account=shown)

    def restrict(self, sheet: CallSheet) -> CallSheet:
        """The sheet (engine/calls/scripts.py CallSheet) with only what may be shown: the
        account's visible fields; the activity (and the redemptions in it), the earlier
        contacts and the case only when shown. Consents and suppressions always show."""
        if self.verified:
            return sheet
        activity = self.shows("activity")
        return replace(
            sheet,
            account=self.with_account(sheet).account,
            activity=sheet.activity if activity else [],
            redemptions=sheet.redemptions if activity else [],
            contacts=sheet.contacts if self.shows("contacts") else [],
            case=sheet.case if self.shows("case") else None,
        )


def gate_for(task: Any, program: Any, zone: str) -> Gate:
    """The gate of the claim (a call_tasks row) of a member of ``program`` (a programs row),
    before its sheet is built (the script withholds what is hidden); :meth:`Gate.with_account`
    fills in the account review's visible fields. ``zone`` is the agent's."""
    verified = is_verified(task)
    shown = shown_before_verification(program)
    hidden = () if verified else tuple(n for n in GATED if n not in shown)
    at = (
        ensure_utc(task.verified_at).astimezone(ZoneInfo(zone)).strftime("%H:%M")
        if verified and task.verified_at is not None
        else None
    )
    return Gate(verified, at, shown, {}, hidden)
