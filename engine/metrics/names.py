"""The names of the engine's metrics, their help and labels: one list for the collector, the
recording code and the documentation's alert rules (tests/ops checks the rules against it).

Counters are stored under the family name (without ``_total``; the exposition adds it).
A duration is a summary of two counters, ``<name>_count`` and ``<name>_sum``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Metric:
    name: str
    help: str
    labels: tuple[str, ...] = ()
    kind: Literal["counter", "summary", "gauge"] = "gauge"


# --- counters of events, persisted by whichever process saw them (engine/metrics/counters.py)
MESSAGES_SENT = Metric(
    "campaign_messages_sent", "Messages the providers accepted.", ("channel",), "counter"
)
PROVIDER_ERRORS = Metric(
    "campaign_provider_errors",
    "Provider errors by class: retryable (429, 5xx, connect), recipient, message, campaign "
    "(401/403), unknown_outcome (no answer after the request went), other.",
    ("channel", "error_class"),
    "counter",
)
RATE_LIMIT_WAITS = Metric(
    "campaign_rate_limit_waits",
    "Requests that waited for the channel's send rate limit.",
    ("channel",),
    "counter",
)
RATE_LIMIT_WAIT_SECONDS = Metric(
    "campaign_rate_limit_wait_seconds",
    "Seconds spent waiting for the channel's send rate limit.",
    ("channel",),
    "counter",
)
RUNS_AUTO_PAUSED = Metric(
    "campaign_runs_auto_paused",
    "Runs the engine paused by itself (provider refused the campaign, a streak of provider "
    "failures, render errors).",
    ("by",),
    "counter",
)
WEBHOOK_REQUESTS = Metric(
    "campaign_webhook_requests",
    "Webhook requests by endpoint and outcome: accepted (2xx), refused (4xx: signature, "
    "malformed, too large), failed (5xx: database unavailable).",
    ("endpoint", "outcome"),
    "counter",
)
TICK_DURATION = Metric(
    "campaign_tick_duration_seconds", "Duration of ticks (cron or the scheduler).", (), "summary"
)
ADVANCE_DURATION = Metric(
    "campaign_advance_duration_seconds",
    "Duration of the sequencer's advance within each tick.",
    (),
    "summary",
)

# --- gauges read from the database at scrape time (engine/metrics/collector.py)
DATABASE_UP = Metric("campaign_database_up", "1 when the scrape could read the database.")
OUTBOX_MESSAGES = Metric(
    "campaign_outbox_messages",
    "Outbox messages by channel and status (from the report tallies).",
    ("channel", "status"),
)
OUTBOX_DUE = Metric(
    "campaign_outbox_due_messages",
    "Queued messages whose time has come (any run; paused runs' too).",
)
OUTBOX_OLDEST_DUE_AGE = Metric(
    "campaign_outbox_oldest_due_age_seconds",
    "Age of the oldest queued message of an active run whose time has come (0: none).",
)
RUNS = Metric("campaign_runs", "Campaign runs by status.", ("status",))
CALL_TASKS_OPEN = Metric(
    "campaign_call_tasks_open",
    "Call tasks open or claimed, by team (team '' : no team).",
    ("team", "status"),
)
CIRCUITS_OPEN = Metric(
    "campaign_provider_circuits_open",
    "Provider circuits open (a provider that is down: its channel waits).",
    ("channel", "provider"),
)
CIRCUIT_OPEN_SECONDS = Metric(
    "campaign_provider_circuit_open_seconds",
    "How long the longest-open circuit of the channel and provider has been open.",
    ("channel", "provider"),
)
HEARTBEAT_AGE = Metric(
    "campaign_heartbeat_age_seconds",
    "Seconds since a process of this kind (dispatcher, tick) last showed it was alive.",
    ("process",),
)

COUNTERS = {
    m.name: m
    for m in (
        MESSAGES_SENT,
        PROVIDER_ERRORS,
        RATE_LIMIT_WAITS,
        RATE_LIMIT_WAIT_SECONDS,
        RUNS_AUTO_PAUSED,
        WEBHOOK_REQUESTS,
        TICK_DURATION,
        ADVANCE_DURATION,
    )
}
GAUGES = (
    DATABASE_UP,
    OUTBOX_MESSAGES,
    OUTBOX_DUE,
    OUTBOX_OLDEST_DUE_AGE,
    RUNS,
    CALL_TASKS_OPEN,
    CIRCUITS_OPEN,
    CIRCUIT_OPEN_SECONDS,
    HEARTBEAT_AGE,
)

# process_heartbeats.process
DISPATCHER = "dispatcher"
TICK = "tick"
