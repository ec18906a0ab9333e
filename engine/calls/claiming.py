"""Claiming the next call in a transaction of its own, as `calls next` and the console do.

The claim runs on a plain Core connection (engine/calls/tasks.py reads and writes tables,
not mapped classes): a claim never imports the ORM, and one that finds nothing callable
not the call sheet's modules or a run's definition schema either (#18). Once a task is
claimed, its call sheet is read in the same transaction, on the same connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.exc import OperationalError

from engine.calls.pauses import NEXT_CALL, end_pause
from engine.calls.rules import CallRules
from engine.calls.tasks import DEFAULT_LEASE, Claim, claim_next
from engine.db.session import WRITER
from engine.errors import DatabaseError, database_locked

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from engine.app import App
    from engine.calls.scripts import NextCall
    from engine.db.reading import Reader
    from engine.settings import Settings

T = TypeVar("T")
U = TypeVar("U")
V = TypeVar("V")

# SQLite: a claim waits for the write lock up to the busy timeout (engine/db/session.py); when
# other claims and logs keep it that long, it is tried again this many times, this far apart.
BUSY_ATTEMPTS = 3
BUSY_PAUSE_SECONDS = 0.5


def take_next(
    db: Reader,
    agent: str,
    *,
    settings: Settings,
    at: datetime,
    lease: timedelta = DEFAULT_LEASE,
) -> Claim | None:
    """Claim the best callable task for ``agent``; an open pause of the agent ends. On SQLite
    call it first in its transaction."""
    claim = claim_next(db, agent, at=at, lease=lease, rules=CallRules.from_settings(settings))
    # Asking for the next call ends a pause: the agent is back (engine/calls/pauses.py).
    end_pause(db, agent, at=at, reason=NEXT_CALL, by=agent)
    return claim


def serve_next_in(
    app: App, agent: str, *, lease: timedelta = DEFAULT_LEASE, gated: bool = False
) -> NextCall | None:
    """engine.calls.scripts.serve_next in a transaction of its own, at the app clock's now.
    On SQLite a claim that waited out the busy timeout is tried again (a fresh transaction, a
    fresh now); still locked after :data:`BUSY_ATTEMPTS`, it is a one-line error, not a
    driver message."""

    def serve(
        connection: Connection, agent: str, *, settings: Settings, at: datetime, lease: timedelta
    ) -> NextCall | None:
        claim = take_next(connection, agent, settings=settings, at=at, lease=lease)
        if claim is None:
            return None
        from engine.calls.scripts import next_call  # the sheet: definitions, templates

        return next_call(connection, claim, settings=settings, at=at, gated=gated)

    return _retried(app, serve, agent, lease)


def take_next_as(
    app: App,
    read: Callable[[Connection], U],
    agent_of: Callable[[U], str | None],
    show: Callable[[Connection, U, datetime], V],
    *,
    lease: timedelta = DEFAULT_LEASE,
) -> tuple[U, Claim | None, V | None]:
    """:func:`take_next` as :func:`serve_next_in` runs it, for the console, for the agent
    known only once ``read`` ran, first in the claim's transaction on its connection: the
    console reads who is asking there, so a claim costs one pool checkout, not two (#19). No
    claim when ``agent_of`` of what was read is None (not an agent). Once a task is claimed,
    ``show`` reads what the agent is shown of it (the console's call sheet) in the same
    transaction, so the claim and its page cost one request, one checkout and one commit
    (#19). On SQLite the transaction begins as the writer: the read comes before the claim's
    first write, and a deferred transaction could not become the writer after another one
    committed."""

    def work(connection: Connection, at: datetime) -> tuple[U, Claim | None, V | None]:
        found = read(connection)
        agent = agent_of(found)
        if agent is None:
            return found, None, None
        claim = take_next(connection, agent, settings=app.settings, at=at, lease=lease)
        return found, claim, show(connection, found, at) if claim is not None else None

    return _attempts(app, work, writer=True)


def _retried(app: App, work: Callable[..., T], agent: str, lease: timedelta) -> T:
    return _attempts(
        app,
        lambda connection, at: work(connection, agent, settings=app.settings, at=at, lease=lease),
    )


def _attempts(app: App, work: Callable[[Connection, datetime], T], *, writer: bool = False) -> T:
    options = {WRITER: True} if writer else {}
    for attempt in range(BUSY_ATTEMPTS):
        try:
            with (
                app.engine.connect().execution_options(**options) as connection,
                connection.begin(),
            ):
                return work(connection, app.clock.now())
        except OperationalError as exc:
            if not database_locked(exc):
                raise
            if attempt + 1 < BUSY_ATTEMPTS:
                time.sleep(BUSY_PAUSE_SECONDS)
    raise DatabaseError(
        f"the database stayed busy (other agents' claims and logs) through {BUSY_ATTEMPTS} "
        "tries; run `campaign calls next` again"
    ) from None
