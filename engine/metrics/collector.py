"""The scrape: a prometheus_client Collector that reads the engine's state from the database
each time /metrics is asked, plus the counters every process saved (engine/metrics/counters).

Every query is cheap however large the outbox grows (plans checked on PostgreSQL with a
million queued messages, docs/operations.md): the outbox is counted through its report
tallies (a few rows per run and step), the due queue through the (status, not_before) index
(an index-only count, and a walk that stops at the first row for the oldest), call tasks
through a partial index of open ones by team, and the rest are small tables.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import SQLAlchemyError

from engine.app import App
from engine.clock import ensure_utc
from engine.db.models import (
    CallTask,
    CampaignRun,
    MetricCounter,
    OutboxMessage,
    OutboxTally,
    ProcessHeartbeat,
    ProviderCircuit,
)
from engine.metrics import names

log = logging.getLogger(__name__)

# Runs whose due messages the dispatcher sends (engine/sending/claim.py SENDABLE_RUNS): a
# paused run's queue is not a stuck dispatcher.
SENDABLE_RUNS = ("active",)


def _gauge(metric: names.Metric) -> GaugeMetricFamily:
    return GaugeMetricFamily(metric.name, metric.help, labels=list(metric.labels))


class EngineCollector(Collector):
    """Everything /metrics shows, read afresh on every scrape."""

    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        # This process's own counts (the webhooks of `serve`) first, so the scrape sees them.
        self.app.metrics.flush(self.app.engine)
        up = _gauge(names.DATABASE_UP)
        try:
            with self.app.engine.connect() as connection:
                families = list(self._read(connection, ensure_utc(self.app.clock.now())))
        except SQLAlchemyError as exc:
            log.warning("/metrics: the database could not be read: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self, connection: Connection, now: datetime) -> Iterator[Metric]:
        yield from _counters(connection)

        messages = _gauge(names.OUTBOX_MESSAGES)
        t = OutboxTally
        tallies = connection.execute(
            select(t.channel, t.status, func.sum(t.messages)).group_by(t.channel, t.status)
        )
        for channel, status, count in sorted(tallies, key=lambda r: (r[0], r[1])):
            messages.add_metric([channel, status], int(count or 0))
        yield messages

        o = OutboxMessage
        due = _gauge(names.OUTBOX_DUE)
        due_count = connection.scalar(
            select(func.count()).where(o.status == "queued", o.not_before <= now)
        )
        due.add_metric([], int(due_count or 0))
        yield due

        oldest = _gauge(names.OUTBOX_OLDEST_DUE_AGE)
        # The claim's own walk of the (status, not_before) index, stopping at its first row of
        # an active run. Not per channel: with no due SMS the walk would read every due
        # email first (0.8 s with 125,000 of them, bench/bench_metrics_scrape.py).
        first = connection.scalar(
            select(o.not_before)
            .join(CampaignRun, CampaignRun.id == o.run_id)
            .where(
                o.status == "queued",
                o.not_before <= now,
                CampaignRun.status.in_(SENDABLE_RUNS),
            )
            .order_by(o.not_before)
            .limit(1)
        )
        age = (now - ensure_utc(first)).total_seconds() if first is not None else 0.0
        oldest.add_metric([], max(0.0, age))
        yield oldest

        runs = _gauge(names.RUNS)
        counted = dict(
            connection.execute(
                select(CampaignRun.status, func.count()).group_by(CampaignRun.status)
            ).all()
        )
        for status in ("active", "paused", "cancelled", "completed"):
            runs.add_metric([status], int(counted.get(status, 0)))
        yield runs

        tasks = _gauge(names.CALL_TASKS_OPEN)
        c = CallTask
        open_tasks = connection.execute(
            select(c.team, c.status, func.count())
            .where(c.status.in_(("open", "claimed")))
            .group_by(c.team, c.status)
        )
        for team, status, count in sorted(open_tasks, key=lambda r: (r[0] or "", r[1])):
            tasks.add_metric([team or "", status], int(count))
        yield tasks

        circuits = _gauge(names.CIRCUITS_OPEN)
        open_for = _gauge(names.CIRCUIT_OPEN_SECONDS)
        p = ProviderCircuit
        rows = connection.execute(
            select(p.channel, p.provider, func.count(), func.min(p.opened_at)).group_by(
                p.channel, p.provider
            )
        )
        for channel, provider, count, opened in sorted(rows, key=lambda r: (r[0], r[1])):
            circuits.add_metric([channel, provider], int(count))
            opened_at = ensure_utc(_as_datetime(opened))
            open_for.add_metric([channel, provider], max(0.0, (now - opened_at).total_seconds()))
        yield circuits
        yield open_for

        heartbeats = _gauge(names.HEARTBEAT_AGE)
        beats = connection.execute(select(ProcessHeartbeat.process, ProcessHeartbeat.beat_at))
        for process, beat_at in sorted(beats):
            heartbeats.add_metric([process], max(0.0, (now - ensure_utc(beat_at)).total_seconds()))
        yield heartbeats


def _as_datetime(value: object) -> datetime:
    # min() over a UTCDateTime column comes back as text on SQLite.
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _counters(connection: Connection) -> Iterator[Metric]:
    """The saved counters, as counter and summary families (every known one, even empty)."""
    values: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for name, label_json, value in connection.execute(
        select(MetricCounter.name, MetricCounter.labels, MetricCounter.value)
    ):
        values[name].append((json.loads(label_json), float(value)))
    for metric in names.COUNTERS.values():
        labelnames = list(metric.labels)
        if metric.kind == "summary":
            summary = SummaryMetricFamily(metric.name, metric.help, labels=labelnames)
            sums = {_label_values(lv, labelnames): v for lv, v in values[metric.name + "_sum"]}
            for labels, count in _in_order(values[metric.name + "_count"]):
                key = _label_values(labels, labelnames)
                summary.add_metric(list(key), count_value=int(count), sum_value=sums.get(key, 0.0))
            yield summary
            continue
        counter = CounterMetricFamily(metric.name, metric.help, labels=labelnames)
        for labels, value in _in_order(values[metric.name]):
            counter.add_metric(list(_label_values(labels, labelnames)), value)
        yield counter


def _in_order(rows: list[tuple[dict[str, str], float]]) -> list[tuple[dict[str, str], float]]:
    return sorted(rows, key=lambda row: sorted(row[0].items()))


def _label_values(labels: dict[str, str], labelnames: list[str]) -> tuple[str, ...]:
    return tuple(str(labels.get(name, "")) for name in labelnames)


def scrape(app: App) -> bytes:
    """The /metrics body: the engine's metrics in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(app))
    return generate_latest(registry)


__all__ = ["EngineCollector", "scrape"]
