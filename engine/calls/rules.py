"""The rules a call task is served under besides consent and the calling window.

- **Frequency caps.** A call is a contact like an email or an SMS: the global cap (settings)
  and the campaign's own cap are checked at claim time with the same pure rule
  (engine/policy/caps.py) over the same contacts ledger (engine/sending/contact_ledger.py) as the
  dispatcher's gate. A task over a cap waits until the cap frees (inside the calling window).
  Exempt: a callback (the member asked for that time) and the follow-up of an inbound SMS
  (the member wrote first); breaking those promises to honour a cap would serve nobody.
- **Callback fallback.** An agent-only callback is served to its agent alone until it is
  ``callback_fallback_after`` business hours (program clock) past its time unclaimed; then it
  is served to the agent's team (the task's team) as well. When the agent is disabled it falls
  back at once. Until it falls back, a past-due agent-only callback is *at risk*.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, or_, select, union_all

from engine.calls.standards import add_business_hours
from engine.clock import ensure_utc
from engine.db.queries import any_of_bound
from engine.db.reading import dialect_name
from engine.db.tables.calls import agents, call_tasks
from engine.db.tables.members import participants, programs
from engine.db.types import UTCDateTime
from engine.policy import FrequencyCap, Window, cap_frees_at, effective_window, next_allowed
from engine.sending.contact_ledger import contact_times
from engine.settings import Settings

if TYPE_CHECKING:
    from engine.db.reading import Reader


@dataclass(frozen=True)
class CallRules:
    global_cap: FrequencyCap
    callback_fallback_after: timedelta  # business hours past the callback's time
    # how long a task waits for an agent who speaks the member's language (language_routing.py)
    language_routing_wait: timedelta = timedelta(minutes=15)

    @classmethod
    def from_settings(cls, settings: Settings) -> CallRules:
        return cls(
            FrequencyCap(settings.frequency_cap_max, settings.frequency_cap_per),
            settings.callback_fallback_after,
            settings.language_routing_wait,
        )

    @classmethod
    def defaults(cls) -> CallRules:
        fields = Settings.model_fields
        return cls(
            FrequencyCap(fields["frequency_cap_max"].default, fields["frequency_cap_per"].default),
            fields["callback_fallback_after"].default,
            fields["language_routing_wait"].default,
        )


DEFAULT_RULES = CallRules.defaults()


# --------------------------------------------------------------------------- caps


def cap_exempt(task: Any) -> bool:
    """A callback the member asked for, or the answer to their own SMS."""
    return task.kind == "callback" or (task.kind == "follow_up" and task.parent_task_id is None)


def caps_for(definition: Any, rules: CallRules) -> list[FrequencyCap]:
    caps = [rules.global_cap]
    own = getattr(definition, "frequency_cap", None) if definition is not None else None
    if own is not None:
        caps.append(FrequencyCap(own.max, own.per))
    return caps


def wait_for_caps(
    contacts: Sequence[datetime],
    when: datetime,
    zones: Sequence[str],
    call_window: Any,
    caps: Sequence[FrequencyCap],
) -> datetime | None:
    """The earliest instant ``>= when`` inside the calling window at which every cap allows
    one more contact (None: never). Each cap's answer is asked again under the others and the
    window until they agree; instants only move forward, so a few rounds suffice."""
    window: Window | None = effective_window("call", call_window)
    for _ in range(16):
        start = when
        for cap in caps:
            frees = cap_frees_at(contacts, when, cap.max, cap.per)
            if frees is None:
                return None
            if frees > when:
                opens = next_allowed(frees, zones, window)
                if opens is None:
                    return None
                when = opens
        if when == start:
            return when
    return when


def contacts_by_participant(
    session: Reader, participant_ids: Iterable[int], since: datetime, at: datetime
) -> dict[int, list[datetime]]:
    """Every participant's contacts after ``since`` as the caps count them, and the calls in
    progress: a live claim (another agent is on the phone, or about to be) counts from its
    claim, so two agents never call one member at once past the cap."""
    ids = sorted(set(participant_ids))
    statement = _contacts_and_live_claims(dialect_name(session) == "postgresql")
    found: dict[int, list[datetime]] = {}
    for i in range(0, len(ids), 500):
        params = {"contact_ids": ids[i : i + 500], "contacts_since": since, "contacts_at": at}
        rows: Any = session.execute(statement, params).all()
        for pid, when in rows:
            if when is not None:
                found.setdefault(pid, []).append(ensure_utc(when))
    return found


@functools.cache
def _contacts_and_live_claims(postgres: bool) -> Any:
    """The statement of :func:`contacts_by_participant`, one per database and process: its
    values are bound parameters, so a claim (which runs it for every page it evaluates)
    builds no expression (#19). PostgreSQL: the ids as one array parameter."""

    def among(column: Any) -> Any:
        return any_of_bound(column, "contact_ids", postgres)

    ledger = contact_times(among, bindparam("contacts_since", type_=UTCDateTime()))
    live_claims = select(call_tasks.c.participant_id, call_tasks.c.claimed_at).where(
        among(call_tasks.c.participant_id),
        call_tasks.c.status == "claimed",
        call_tasks.c.claimed_until >= bindparam("contacts_at", type_=UTCDateTime()),
        call_tasks.c.claimed_at.is_not(None),
    )
    # One statement for both.
    return union_all(*ledger.selects, live_claims)


# --------------------------------------------------------------------------- callbacks


def fallback_at(
    due_at: datetime, rules: CallRules, zone: str, *, holidays: str | None = None
) -> datetime:
    """When an unclaimed agent-only callback due at ``due_at`` goes to the team too (business
    hours on the program's clock ``zone`` and holiday calendar)."""
    hours = rules.callback_fallback_after.total_seconds() / 3600
    if hours <= 0:
        return due_at
    return add_business_hours(ensure_utc(due_at), hours, zone, holidays=holidays)


def fallback_reason(
    task: Any,
    *,
    zone: str,
    active: set[str],
    at: datetime,
    rules: CallRules,
    holidays: str | None = None,
) -> str | None:
    """Why an agent-only callback is served to others now, or None when it is not."""
    if task.kind != "callback" or task.assigned_agent is None or task.due_at > at:
        return None
    if task.assigned_agent not in active:
        return f"{task.assigned_agent} is disabled"
    if fallback_at(task.due_at, rules, zone, holidays=holidays) <= at:
        return f"not taken by {task.assigned_agent} in time"
    return None


def past_due_callback_of_another(login: Any, at: Any, may_have_fallen_back: Any = True) -> Any:
    """SQL: an agent-only callback of someone else than ``login``, past due at ``at`` (values
    or bound parameters): fallback candidates; the rule itself, in business hours, is applied
    in Python by :func:`fallback_reason`. ``may_have_fallen_back``: a condition that keeps
    only those that may have fallen back (engine/calls/tasks.py says which)."""
    return and_(
        call_tasks.c.kind == "callback",
        call_tasks.c.assigned_agent.is_not(None),
        call_tasks.c.assigned_agent != login,
        call_tasks.c.due_at <= at,
        may_have_fallen_back,
    )


_ACTIVE_LOGINS = select(agents.c.login).where(agents.c.active.is_(True))


def active_logins(session: Reader) -> set[str]:
    return set(session.scalars(_ACTIVE_LOGINS))


@dataclass(frozen=True)
class AtRisk:
    task_id: int
    external_id: str
    program: str
    agent: str
    agent_state: str  # active / disabled / unknown
    team: str | None
    campaign: str | None
    due_at: datetime
    falls_back_at: datetime
    fallen_back: bool  # already served to the team


def callbacks_at_risk(
    session: Reader,
    *,
    at: datetime,
    rules: CallRules = DEFAULT_RULES,
    program: str | None = None,
    campaign: str | None = None,
    agent: str | None = None,
) -> list[AtRisk]:
    """Agent-only callbacks past their time that nobody has claimed: their agent is disabled
    or has not taken them (``fallen_back`` once the team is served them too); only those of
    ``program`` (key), ``campaign`` and ``agent`` when given."""
    at = ensure_utc(at)
    states = {
        login: active for login, active in session.execute(select(agents.c.login, agents.c.active))
    }
    query = (
        select(
            call_tasks.c.id,
            call_tasks.c.assigned_agent,
            call_tasks.c.team,
            call_tasks.c.campaign,
            call_tasks.c.due_at,
            participants.c.external_id,
            programs.c.key,
            programs.c.timezone,
            programs.c.holidays,
        )
        .select_from(call_tasks)
        .join(participants, participants.c.id == call_tasks.c.participant_id)
        .join(programs, programs.c.id == participants.c.program_id)
        .where(
            call_tasks.c.kind == "callback",
            call_tasks.c.assigned_agent.is_not(None),
            call_tasks.c.due_at <= at,
            or_(
                call_tasks.c.status == "open",
                and_(call_tasks.c.status == "claimed", call_tasks.c.claimed_until < at),
            ),
        )
        .order_by(call_tasks.c.due_at, call_tasks.c.id)
    )
    if program is not None:
        query = query.where(programs.c.key == program)
    if campaign is not None:
        query = query.where(call_tasks.c.campaign == campaign)
    if agent is not None:
        query = query.where(call_tasks.c.assigned_agent == agent)
    found = []
    for task in session.execute(query).all():
        login = str(task.assigned_agent)  # not NULL: selected so
        state = "unknown" if login not in states else ("active" if states[login] else "disabled")
        falls = (
            task.due_at
            if state != "active"
            else fallback_at(task.due_at, rules, task.timezone, holidays=task.holidays)
        )
        found.append(
            AtRisk(
                task.id,
                task.external_id,
                task.key,
                login,
                state,
                task.team,
                task.campaign,
                task.due_at,
                falls,
                falls <= at,
            )
        )
    return found
