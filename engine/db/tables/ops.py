"""What the engine keeps for itself: settings, shared rate limits, circuits, metrics.

Core tables (engine/db/tables/__init__.py says why)."""

from sqlalchemy import (
    Column,
    Float,
    Integer,
    Numeric,
    String,
    Table,
    Text,
)

from engine.db.tables.base import metadata
from engine.db.types import UTCDateTime

# Values the engine generates once and keeps (e.g. the unsubscribe signing key).
engine_settings = Table(
    "engine_settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


# The timeline of one send rate limit shared by every dispatcher on PostgreSQL (a
# channel and its sender, e.g. ``sms:twilio:MG...``): free from ``next_slot`` on, in seconds
# since the epoch on the database's clock (numeric: exact however small the slots).
# engine/sending/shared_ratelimit.py reserves slots by moving it on. UNLOGGED on PostgreSQL
# (migration 0008); unused on SQLite.
rate_limit_slots = Table(
    "rate_limit_slots",
    metadata,
    Column("bucket", String(400), primary_key=True),
    Column("next_slot", Numeric, nullable=False),
)


# A provider (and sender) that is down: its channel waits, its messages spend no attempt
# (engine/sending/circuits.py). Keyed like the rate limits (``email:sendgrid:rewards@...``);
# no row means the circuit is closed. Until ``retry_at`` no dispatcher claims for it; then one
# request probes. ``failures``: probes failed in a row (the wait doubles each time).
provider_circuits = Table(
    "provider_circuits",
    metadata,
    Column("key", String(400), primary_key=True),
    Column("channel", String(8), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("opened_at", UTCDateTime(), nullable=False),
    Column("retry_at", UTCDateTime(), nullable=False),
    Column("failures", Integer, nullable=False),
    Column("last_error", Text),
)


# A counter of something that happens in any process (a send, a provider error, a
# webhook request, a tick's seconds), summed over every process that ever added to it:
# each process adds what it counted since its last flush (engine/metrics/counters.py), and
# ``campaign serve`` exposes the sums on /metrics. ``labels`` is the label set as canonical
# JSON (sorted keys). Rows are few: one per metric and label set, never per event.
metric_counters = Table(
    "metric_counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("labels", String(400), primary_key=True),
    Column("value", Float, nullable=False),
)


# When a kind of process (``dispatcher``, ``tick``) last showed it was alive, whichever
# of its instances that was: /metrics turns it into the age of the freshest.
process_heartbeats = Table(
    "process_heartbeats",
    metadata,
    Column("process", String(32), primary_key=True),
    Column("beat_at", UTCDateTime(), nullable=False),
)
