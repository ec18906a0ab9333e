"""Report subscriptions' deliveries and the browser console's users and audit.

Core tables (engine/db/tables/__init__.py says why)."""

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from engine.db.tables.base import is_one_of, metadata
from engine.db.types import BigIntId, UTCDateTime

REPORT_DELIVERY_STATUSES = (
    "pending",
    "sending",
    "retrying",
    "sent",
    "failed",
    "unknown",
    "skipped",
)
CONSOLE_ROLES = ("agent", "supervisor", "manager", "coordinator")

# When the engine first saw each schedule of a report subscription: a new or edited
# schedule delivers from its next fire time on (like ``campaign_schedules``).
report_schedules = Table(
    "report_schedules",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("subscription", String(64), nullable=False),
    Column("schedule_hash", String(64), nullable=False),
    Column("description", Text, nullable=False),
    Column("first_seen_at", UTCDateTime(), nullable=False),
    UniqueConstraint("subscription", "schedule_hash"),
)


# One delivery of a report subscription: one row per (subscription, fire key), so two
# ticks or a tick beside the daemon deliver a fire once (engine/subscriptions/deliveries.py).
# ``fire_key`` is the fire's UTC ISO time, or ``send:<time>:<n>`` for `campaign reports
# send`. A retryable failure goes back to ``retrying`` with ``next_attempt_at``; ``failed``
# and ``unknown`` are listed by `campaign reports deliveries`, never retried blindly.
report_deliveries = Table(
    "report_deliveries",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("subscription", String(64), nullable=False),
    Column("fire_key", String(96), nullable=False),
    Column("fire_at", UTCDateTime(), nullable=False),
    Column("manual", Boolean, default=False, nullable=False),
    Column("period_label", String(64), nullable=False),
    Column("recipients", Text, nullable=False),  # comma-separated
    Column("delivered_to", Text, default="", nullable=False),  # those sent so far
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, default=0, nullable=False),
    Column("next_attempt_at", UTCDateTime()),
    Column("claimed_until", UTCDateTime()),
    Column("last_error", Text),
    Column("provider_message_id", String(255)),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime()),
    UniqueConstraint("subscription", "fire_key"),
    CheckConstraint(is_one_of("status", REPORT_DELIVERY_STATUSES), name="status"),
    Index(None, "status", "next_attempt_at"),
)


# A person who signs in to the browser console (engine/web). ``agent_id`` links an
# agent's user to their row in ``agents`` (their queue, teams, zone); other roles need none.
# ``session_version`` is in every session cookie: raising it (disable, new password, role
# change) signs the person out everywhere at once.
console_users = Table(
    "console_users",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("login", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("agent_id", BigIntId, ForeignKey("agents.id", ondelete="SET NULL")),
    Column("password_hash", Text, nullable=False),
    Column("active", Boolean, default=True, nullable=False),
    Column("session_version", Integer, default=0, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("password_set_at", UTCDateTime(), nullable=False),
    UniqueConstraint("login"),
    CheckConstraint(is_one_of("role", CONSOLE_ROLES), name="role"),
)


# Who signed in, failed to, was added, disabled, given a new password or a new role, and
# from which address. Failed sign-ins here also drive the sign-in rate limit
# (engine/web/audit.py), so the limit and the record can never disagree.
console_audit = Table(
    "console_audit",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("event", String(32), nullable=False),
    Column("login", String(64), nullable=False),
    Column("address", String(64)),
    Column("actor", String(64)),  # who did it (a CLI user: "cli")
    Column("detail", Text),
    Index(None, "login", "event", "at"),
    Index(None, "address", "event", "at"),
)
