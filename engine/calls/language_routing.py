"""Language routing: a member's call task is served first to an agent who speaks their language.

The member's language is the language of their locale (zh for zh-Hant-TW). An agent who has
languages set but not that one is served the task only ``language_routing_wait`` (setting
CAMPAIGN_LANGUAGE_ROUTING_WAIT, default 15 minutes) after it became callable (its due time,
or the opening of the member's calling window when it fell due outside it), and only while an
active agent who speaks it exists: with nobody to wait for, waiting would serve no one.

A task assigned to the agent (a callback the member booked with them, their case's
follow-up) is never held from them: no speaker could be served it in their place, so holding
it would only make the member wait past the time they were promised.

Agents without languages are served as before, and so are members without a locale. This
only delays a task for some agents: the consent, suppression, calling-window and frequency-cap
checks are those of every claim (engine/calls/tasks.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from engine.db.tables.calls import agents
from engine.locales import primary_language
from engine.policy import Decision, WaitUntil, decide

if TYPE_CHECKING:
    from engine.db.reading import Reader

WAITS_FOR_LANGUAGE = "language"


def spoken_languages(session: Reader) -> frozenset[str]:
    """The languages at least one active agent speaks."""
    spoken: set[str] = set()
    for languages in session.scalars(select(agents.c.languages).where(agents.c.active.is_(True))):
        spoken.update(languages or [])
    return frozenset(spoken)


@dataclass(frozen=True)
class LanguageRouting:
    """The routing rule for one agent's list or claim."""

    agent_languages: frozenset[str]
    spoken: frozenset[str]  # by some active agent
    wait: timedelta
    agent_login: str | None = None  # tasks assigned to this agent are theirs: never held

    @classmethod
    def for_agent(cls, session: Reader, agent: Any, wait: timedelta) -> LanguageRouting | None:
        """None when nothing is held from this agent: no agent (the coordinator's whole list),
        an agent without languages, or no wait."""
        if agent is None or not agent.languages or wait <= timedelta(0):
            return None
        return cls(frozenset(agent.languages), spoken_languages(session), wait, agent.login)

    def holds(self, member_locale: str | None) -> str | None:
        """The member's language when their task must first wait for one of its speakers."""
        language = primary_language(member_locale)
        if language is None or language in self.agent_languages or language not in self.spoken:
            return None
        return language


def opened_at(candidate: Any, cache: dict[tuple[Any, ...], Decision]) -> datetime:
    """When the task became callable: its due time, or the next opening of the member's
    calling window after it (the wait is for a speaker who could have called)."""
    due = candidate.task.due_at
    window = candidate.call_window
    key = (
        candidate.zones,
        None if window is None else (window.start, window.end, tuple(window.days)),
        due,
    )
    verdict = cache.get(key)
    if verdict is None:
        verdict = cache[key] = decide("call", candidate.facts, due, call_window=window)
    return verdict.until if isinstance(verdict, WaitUntil) else due


def apply_language_routing(candidates: Sequence[Any], routing: LanguageRouting | None) -> None:
    """Move the callable instant of each task held for a speaker of its member's language to
    when the wait ends (``waits_for`` 'language', ``language`` the member's language)."""
    if routing is None:
        return
    cache: dict[tuple[Any, ...], Decision] = {}
    for c in candidates:
        if c.blocked is not None or c.callable_at is None:
            continue
        if routing.agent_login is not None and c.task.assigned_agent == routing.agent_login:
            continue
        language = routing.holds(c.participant.locale)
        if language is None:
            continue
        until = opened_at(c, cache) + routing.wait
        if until > c.callable_at:
            c.callable_at, c.waits_for, c.held_for_language = until, WAITS_FOR_LANGUAGE, language
