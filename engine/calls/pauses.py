"""Pause codes: an agent away from the phone for a reason (break, training, meeting...).

One table, ``agent_pauses``: a pause starts with a code and ends when the agent resumes, takes
the next call (engine/calls/claiming.py take_next) or signs out of the console; at most one
open pause per agent (a partial unique index says so too). Pausing is refused while the agent
holds a live claim, so paused time never overlaps a call: handle time (claim to log) holds no
pause, and :func:`pause_totals` reports paused time by code apart from talk and idle time.

The codes come from the ``pause_codes`` setting (``CAMPAIGN_PAUSE_CODES``, a comma list;
default break, training, meeting). The same functions serve `campaign agents pause/resume`
and the console's buttons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from engine.calls.agent_rows import locked_agent
from engine.clock import ensure_utc
from engine.db.session import take_write_lock
from engine.db.tables.calls import agent_pauses, call_tasks
from engine.errors import InputError
from engine.settings import Settings

if TYPE_CHECKING:
    from engine.db.reading import Reader

DEFAULT_CODES = ("break", "training", "meeting")
# Why a pause ended.
RESUMED = "resumed"
NEXT_CALL = "next call"
SIGNED_OUT = "signed out"
DISABLED = "agent disabled"


def pause_codes(settings: Settings) -> tuple[str, ...]:
    """The configured codes, lower case, in their order; the defaults when the list is empty."""
    codes = [c.strip().lower() for c in settings.pause_codes.split(",") if c.strip()]
    return tuple(dict.fromkeys(codes)) or DEFAULT_CODES


# Built once (every claim asks, #19): the agent is bound when it runs.
_OPEN_PAUSE = select(agent_pauses).where(
    agent_pauses.c.agent == bindparam("pause_agent"), agent_pauses.c.ended_at.is_(None)
)


def open_pause(session: Reader, agent: str) -> Any:
    """The agent's open ``agent_pauses`` row, or None."""
    return session.execute(_OPEN_PAUSE, {"pause_agent": agent}).first()


def open_pauses(session: Reader) -> dict[str, Any]:
    """Every agent's open pause, by login (the wallboard)."""
    return {
        p.agent: p
        for p in session.execute(select(agent_pauses).where(agent_pauses.c.ended_at.is_(None)))
    }


def start_pause(
    session: Reader,
    agent_login: str,
    code: str,
    *,
    codes: tuple[str, ...],
    at: datetime,
    by: str,
) -> Any:
    """Pause ``agent_login`` with ``code``. Refused for an unknown code, a disabled agent, an
    agent already paused, or one holding a live claim (log or release it first)."""
    at = ensure_utc(at)
    take_write_lock(session)  # SQLite: first in the transaction; serialises with claims
    agent = locked_agent(session, agent_login)  # PostgreSQL: one at a time with its claims
    if not agent.active:
        raise InputError(f"agent {agent.login!r} is disabled")
    wanted = code.strip().lower()
    if wanted not in codes:
        raise InputError(f"unknown pause code {code!r}: one of {', '.join(codes)}")
    current = open_pause(session, agent.login)
    if current is not None:
        raise InputError(
            f"{agent.login} is already paused ({current.code} since "
            f"{current.started_at:%Y-%m-%d %H:%M} UTC); resume first"
        )
    held = session.scalar(
        select(call_tasks.c.id)
        .where(
            call_tasks.c.status == "claimed",
            call_tasks.c.claimed_by == agent.login,
            call_tasks.c.claimed_until >= at,
        )
        .limit(1)
    )
    if held is not None:
        raise InputError(
            f"{agent.login} holds task {held}: log or release it before pausing "
            "(a pause never overlaps a call)"
        )
    try:
        return session.execute(
            insert(agent_pauses)
            .values(agent=agent.login, code=wanted, started_at=at, started_by=by)
            .returning(*agent_pauses.c)
        ).one()
    except IntegrityError:  # another pause of theirs committed meanwhile (the unique index)
        raise InputError(f"{agent.login} is already paused; resume first") from None


def end_pause(session: Reader, agent_login: str, *, at: datetime, reason: str, by: str) -> Any:
    """End the agent's open pause, if any; returns its row as ended (None: they were not
    paused). Core statements: `calls next` ends a pause without the ORM (#18)."""
    pause = open_pause(session, agent_login)
    if pause is None:
        return None
    return session.execute(
        update(agent_pauses)
        .where(agent_pauses.c.id == pause.id)
        .values(ended_at=max(ensure_utc(at), pause.started_at), end_reason=reason, ended_by=by)
        .returning(*agent_pauses.c)
    ).one()


@dataclass(frozen=True)
class PauseTotal:
    agent: str
    code: str
    pauses: int
    seconds: int


def pause_totals(
    session: Reader,
    *,
    start: datetime,
    end: datetime,
    at: datetime,
    agent: str | None = None,
) -> list[PauseTotal]:
    """Paused time in [start, end) per agent and code: each pause clipped to the period, an
    open one counted up to ``at``. A pause that straddles the period's edge is counted once,
    in the period, with only its time inside."""
    start, end, at = ensure_utc(start), ensure_utc(end), ensure_utc(at)
    query = select(agent_pauses).where(
        agent_pauses.c.started_at < end,
        or_(agent_pauses.c.ended_at.is_(None), agent_pauses.c.ended_at > start),
    )
    if agent is not None:
        query = query.where(agent_pauses.c.agent == agent)
    totals: dict[tuple[str, str], list[int]] = {}
    for p in session.execute(query.order_by(agent_pauses.c.agent, agent_pauses.c.code)):
        first = max(p.started_at, start)
        last = min(p.ended_at or at, end)
        seconds = max(0, int((last - first).total_seconds()))
        figures = totals.setdefault((p.agent, p.code), [0, 0])
        figures[0] += 1
        figures[1] += seconds
    return [PauseTotal(a, c, n, s) for (a, c), (n, s) in sorted(totals.items())]
