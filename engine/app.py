"""The composition root: the one place that turns Settings into a working engine."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from engine.calls.log_key import SESSION_INFO_KEY, CallerLogKey
from engine.clock import Clock, SystemClock
from engine.db import migrate
from engine.db.session import make_engine, make_session_factory
from engine.metrics.counters import Counters
from engine.settings import Settings


@dataclass
class App:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock = field(default_factory=SystemClock)
    # What this process counted for /metrics (engine/metrics), added to the database's sums
    # by the dispatcher's heartbeat, each tick, each scrape and here on close.
    metrics: Counters = field(default_factory=Counters)

    def close(self) -> None:
        self.metrics.flush(self.engine)
        self.engine.dispose()


def build_app(settings: Settings, *, clock: Clock | None = None, check_schema: bool = True) -> App:
    """Build the engine from settings. Refuses a database whose schema is not current, unless
    the caller is the migration command itself (``check_schema=False``)."""
    engine = make_engine(settings.database_url)
    if check_schema:
        try:
            migrate.ensure_current(engine)
        except Exception:
            engine.dispose()
            raise
    return App(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine, info={SESSION_INFO_KEY: CallerLogKey(settings)}),
        clock=clock or SystemClock(),
    )
