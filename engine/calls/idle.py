"""Idle time: an agent signed in to the console, neither on a call nor paused.

What it is based on (what the data records, nothing guessed):

- **signed in**: the console's audit table (engine/web/audit.py): from a sign-in to the
  agent's next sign-out, or to the session's end (:data:`engine.web.sessions.LIFETIME` after
  the last sign-in), whichever comes first. An agent working only from the terminal has no
  signed-in time, so no idle time either (the report says "-").
- **on a call**: each caller-log entry of theirs from its claim to its log (``claimed_at`` ..
  ``logged_at``), and the live claim they hold now from its claim. A claim given back or left
  to expire without a log leaves no record of when it ended, so that time counts as idle.
- **paused**: their pauses (engine/calls/pauses.py), an open one up to now.

Idle time is signed-in time minus call and paused time, clipped to the period; "idle since"
(the wallboard) is where the agent's current idle stretch began: their sign-in, or the end of
their last call or pause, whichever is later."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from engine.clock import ensure_utc
from engine.db.models import AgentPause, CallerLogEntry, CallTask, ConsoleAuditEvent
from engine.web import audit
from engine.web.sessions import LIFETIME

Span = tuple[datetime, datetime]


@dataclass(frozen=True)
class Idle:
    agent: str
    signed_in_seconds: int
    idle_seconds: int
    idle_since: datetime | None  # idle right now (at the period's end) since then; else None


def signed_in(events: Iterable[tuple[datetime, str]], *, until: datetime) -> list[Span]:
    """Signed-in spans from one login's sign-in / sign-out events in time order: a sign-in
    (another tab too) runs to the next sign-out or LIFETIME after the last sign-in."""
    spans: list[Span] = []
    began: datetime | None = None
    expires: datetime | None = None
    for at, event in events:
        at = ensure_utc(at)
        if began is not None and expires is not None and expires <= at:
            spans.append((began, expires))  # the session ran out before this event
            began = None
        if event == audit.SIGN_IN:
            began = began or at
            expires = at + LIFETIME
        elif event == audit.SIGN_OUT and began is not None:
            spans.append((began, at))
            began = None
    if began is not None and expires is not None:
        spans.append((began, min(expires, until)))
    return [(a, b) for a, b in spans if b > a]


def _merged(spans: Iterable[Span]) -> list[Span]:
    out: list[Span] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        elif b > a:
            out.append((a, b))
    return out


def _minus(spans: Sequence[Span], busy: Sequence[Span]) -> list[Span]:
    """``spans`` (merged) without ``busy`` (merged)."""
    out: list[Span] = []
    for a, b in spans:
        cursor = a
        for x, y in busy:
            if y <= cursor or x >= b:
                continue
            if x > cursor:
                out.append((cursor, x))
            cursor = max(cursor, y)
        if cursor < b:
            out.append((cursor, b))
    return out


def _clip(spans: Iterable[Span], start: datetime, end: datetime) -> list[Span]:
    return [(max(a, start), min(b, end)) for a, b in spans if b > start and a < end]


def _seconds(spans: Iterable[Span]) -> int:
    return int(sum((b - a).total_seconds() for a, b in spans))


def _since(spans: Sequence[Span], busy: Sequence[Span], at: datetime) -> datetime | None:
    """When the current idle stretch began: signed in now and neither on a call nor paused
    now; since the sign-in or the end of the last call or pause, whichever is later (a pause
    that ended this very instant: idle since now)."""
    if not spans or spans[-1][1] < at:
        return None  # not signed in now (or the period ended before now)
    if any(x <= at < y for x, y in busy):
        return None
    ended = [y for _, y in busy if y <= at]
    return max([spans[-1][0], *ended])


def idle_times(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    at: datetime,
    agents: Sequence[str] | None = None,
) -> dict[str, Idle]:
    """Signed-in and idle time in [start, end) (up to ``at``) per agent who was signed in,
    by login; ``agents``: only these. Four queries whatever the number of agents."""
    start, at = ensure_utc(start), ensure_utc(at)
    end = min(ensure_utc(end), at)
    sign_events = (
        select(ConsoleAuditEvent.login, ConsoleAuditEvent.at, ConsoleAuditEvent.event)
        .where(
            ConsoleAuditEvent.event.in_((audit.SIGN_IN, audit.SIGN_OUT)),
            ConsoleAuditEvent.at > start - LIFETIME,  # a session still open at the start
            ConsoleAuditEvent.at < end,
        )
        .order_by(ConsoleAuditEvent.login, ConsoleAuditEvent.at, ConsoleAuditEvent.id)
    )
    if agents is not None:
        sign_events = sign_events.where(ConsoleAuditEvent.login.in_(agents))
    events: dict[str, list[tuple[datetime, str]]] = {}
    for login, when, event in session.execute(sign_events):
        events.setdefault(login, []).append((when, event))
    present = {
        login: _merged(_clip(signed_in(ev, until=end), start, end)) for login, ev in events.items()
    }
    present = {login: spans for login, spans in present.items() if spans}
    if not present:
        return {}
    logins = sorted(present)
    ongoing = at + LIFETIME  # a live claim or an open pause: busy past now
    busy: dict[str, list[Span]] = {login: [] for login in logins}
    for login, claimed, logged in session.execute(
        select(CallerLogEntry.agent, CallerLogEntry.claimed_at, CallerLogEntry.logged_at).where(
            CallerLogEntry.agent.in_(logins),
            CallerLogEntry.claimed_at.is_not(None),
            CallerLogEntry.claimed_at < end,
            CallerLogEntry.logged_at > start - LIFETIME,
        )
    ):
        if claimed is not None:  # (filtered in SQL; for the type checker)
            busy[login].append((ensure_utc(claimed), ensure_utc(logged)))
    for holder, claimed in session.execute(
        select(CallTask.claimed_by, CallTask.claimed_at).where(
            CallTask.status == "claimed",
            CallTask.claimed_by.in_(logins),
            CallTask.claimed_until >= at,
            CallTask.claimed_at.is_not(None),
        )
    ):
        if holder is not None and claimed is not None:
            busy[holder].append((ensure_utc(claimed), ongoing))
    for login, began, ended in session.execute(
        select(AgentPause.agent, AgentPause.started_at, AgentPause.ended_at).where(
            AgentPause.agent.in_(logins),
            AgentPause.started_at < end,
            or_(AgentPause.ended_at.is_(None), AgentPause.ended_at > start - LIFETIME),
        )
    ):
        busy[login].append((ensure_utc(began), ensure_utc(ended) if ended else ongoing))
    result: dict[str, Idle] = {}
    for login in logins:
        spans = present[login]
        merged = _merged(busy[login])
        idle = _minus(spans, merged)
        result[login] = Idle(login, _seconds(spans), _seconds(idle), _since(spans, merged, at))
    return result
