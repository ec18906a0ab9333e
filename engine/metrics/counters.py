"""Counters of one process, summed in memory and added to the database's on flush.

``add`` is a dict update under a lock (called on the dispatcher's hot path); ``flush`` adds
what was counted since the last flush with one upsert per changed row, in one transaction,
and keeps the counts when the database refuses (they go with the next flush). A process
that dies loses at most what it counted since its last flush: a few seconds of counts.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine, func
from sqlalchemy.exc import SQLAlchemyError

if TYPE_CHECKING:
    from engine.metrics.names import Metric

log = logging.getLogger(__name__)

# Rows of metric_counters are (name, labels as canonical JSON).
Key = tuple[str, str]


def label_key(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Counters:
    """What this process counted since its last flush, and its heartbeats."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[Key, float] = {}
        self._beats: dict[str, datetime] = {}
        self._flushing = threading.Lock()  # one flush at a time: the counts are swapped out

    def add(self, metric: Metric, amount: float = 1.0, **labels: str) -> None:
        if amount == 0:
            return
        key = (metric.name, label_key(labels))
        with self._lock:
            self._pending[key] = self._pending.get(key, 0.0) + amount

    def observe(self, metric: Metric, seconds: float, **labels: str) -> None:
        """One observation of a summary (a duration): its count and its sum."""
        with self._lock:
            for suffix, amount in (("_count", 1.0), ("_sum", seconds)):
                key = (metric.name + suffix, label_key(labels))
                self._pending[key] = self._pending.get(key, 0.0) + amount

    def beat(self, process: str, at: datetime) -> None:
        with self._lock:
            if process not in self._beats or self._beats[process] < at:
                self._beats[process] = at

    def pending(self) -> dict[Key, float]:
        with self._lock:
            return dict(self._pending)

    def flush(self, engine: Engine) -> bool:
        """Add the counts to the database; False (counts kept, logged) when it refuses."""
        with self._flushing:
            with self._lock:
                counts, self._pending = self._pending, {}
                beats, self._beats = self._beats, {}
            if not counts and not beats:
                return True
            # The tables only when there is something to add: every App flushes on close,
            # most commands counted nothing (#18).
            from engine.db.tables.ops import metric_counters, process_heartbeats

            try:
                with engine.begin() as connection:
                    insert = _insert_for(engine)
                    for (name, labels), amount in sorted(counts.items()):
                        statement = insert(metric_counters).values(
                            name=name, labels=labels, value=amount
                        )
                        connection.execute(
                            statement.on_conflict_do_update(
                                index_elements=["name", "labels"],
                                set_={"value": metric_counters.c.value + statement.excluded.value},
                            )
                        )
                    for process, at in sorted(beats.items()):
                        statement = insert(process_heartbeats).values(process=process, beat_at=at)
                        later = func.greatest if engine.dialect.name == "postgresql" else func.max
                        connection.execute(
                            statement.on_conflict_do_update(
                                index_elements=["process"],
                                set_={
                                    "beat_at": later(
                                        process_heartbeats.c.beat_at, statement.excluded.beat_at
                                    )
                                },
                            )
                        )
            except SQLAlchemyError as exc:
                log.warning("metrics not saved this time (kept for the next try): %s", exc)
                with self._lock:
                    for key, amount in counts.items():
                        self._pending[key] = self._pending.get(key, 0.0) + amount
                    for process, at in beats.items():
                        if process not in self._beats or self._beats[process] < at:
                            self._beats[process] = at
                return False
            return True


def _insert_for(engine: Engine):  # type: ignore[no-untyped-def]
    # Imported here: the PostgreSQL dialect costs a command on SQLite about 80 ms (#18).
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    from sqlalchemy.dialects import sqlite

    return sqlite.insert


__all__ = ["Counters", "label_key"]
