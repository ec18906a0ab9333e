"""The composition root: the one place that turns Settings into a working engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from engine.calls.log_key import SESSION_INFO_KEY, CallerLogKey
from engine.clock import Clock, SystemClock
from engine.db import migrate
from engine.db.session import DeferredSessionFactory, make_engine
from engine.metrics.counters import Counters
from engine.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass
class App:
    settings: Settings
    engine: Engine
    # A sessionmaker, or any callable that makes sessions as one does (build_app's makes it on
    # first use); ``sessions(bind=connection)`` joins that connection's transaction.
    sessions: Callable[..., Session]
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
        sessions=DeferredSessionFactory(engine, info={SESSION_INFO_KEY: CallerLogKey(settings)}),
        clock=clock or SystemClock(),
    )
