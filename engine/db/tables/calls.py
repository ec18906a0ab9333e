"""Calls: call tasks, agents and their pauses, the caller log and its checkpoints.

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
    text,
)

from engine.db.tables.base import PartialIndex, is_one_of, metadata
from engine.db.types import BigIntId, JSONDict, UTCDateTime

CALL_TASK_KINDS = ("campaign", "callback", "follow_up")
CALL_TASK_STATUSES = ("open", "claimed", "closed")
AGENT_ROLES = ("agent", "coordinator", "manager")

# Work on an agent's call list: a call step of a campaign, a callback, or a follow-up of
# an inbound reply. UNIQUE(enrollment_id, step_id) gives one campaign task per step; callbacks
# and follow-ups have no step (NULLs never collide). ``reached_at`` is set when an agent
# spoke with the participant (the ``not_reached_by_phone`` step condition reads it).
call_tasks = Table(
    "call_tasks",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("kind", String(16), default="campaign", nullable=False),
    Column("run_id", BigIntId, ForeignKey("campaign_runs.id", ondelete="CASCADE")),
    Column("enrollment_id", BigIntId, ForeignKey("enrollments.id", ondelete="CASCADE")),
    Column(
        "participant_id",
        BigIntId,
        ForeignKey("participants.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("campaign", String(64)),
    Column("step_id", String(64)),
    Column("step_index", Integer),
    Column("script", String(128)),
    Column("team", String(64)),
    Column("status", String(16), default="open", nullable=False),
    Column("close_reason", Text),
    Column("outcome", String(32)),
    Column("due_at", UTCDateTime(), nullable=False),
    Column("attempts", Integer, default=0, nullable=False),
    Column("max_attempts", Integer, default=3, nullable=False),
    Column("claimed_by", String(64)),
    Column("claimed_until", UTCDateTime()),
    Column("reached_at", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # Added by 0004 (engine/calls): an agent-only task (agent-only callback) names its agent;
    # a callback or follow-up points at the task it came from and keeps that task's step (its
    # script, talking points, priority); claimed_at starts the handle time.
    Column("assigned_agent", String(64)),
    Column("parent_task_id", BigIntId, ForeignKey("call_tasks.id", ondelete="SET NULL")),
    Column("source_step_id", String(64)),
    Column("claimed_at", UTCDateTime()),
    Column("last_attempt_at", UTCDateTime()),
    # The deadline (0016): past it the task is not served and is closed as ``expired``.
    Column("expires_at", UTCDateTime()),
    # A follow-up of a case (0023, engine/cases): the call is recorded in the case's history.
    Column("case_id", BigIntId, ForeignKey("cases.id", ondelete="SET NULL"), index=True),
    # The claim's agent recorded that the member's identity was verified (0030): the full
    # account is shown from then on, for this claim only (verified_by/at must match the claim).
    Column("verified_at", UTCDateTime()),
    Column("verified_by", String(64)),
    UniqueConstraint("enrollment_id", "step_id"),
    CheckConstraint(is_one_of("kind", CALL_TASK_KINDS), name="kind"),
    CheckConstraint(is_one_of("status", CALL_TASK_STATUSES), name="status"),
    Index(None, "status", "due_at"),
    Index(None, "participant_id"),
    Index(None, "run_id"),
    # /metrics: open call tasks by team, from the index alone (engine/metrics; 0027).
    PartialIndex(
        "ix_call_tasks_open_by_team",
        "team",
        "status",
        where="status IN ('open', 'claimed')",
    ),
    # The open tasks that can expire, which every claim closes once past their deadline
    # (engine/sending/deadlines.py close_expired_call_tasks; 0034).
    PartialIndex(
        "ix_call_tasks_open_expiring",
        "expires_at",
        where="status IN ('open', 'claimed') AND expires_at IS NOT NULL",
    ),
    # A run's open tasks of one kind in due order: claim-next reads a step's page from it
    # and stops, instead of sorting the run's whole list for each page; and "has this run an
    # open call task?" (engine/run_work.py) is a probe of its first column (0038, replacing
    # 0014's ix_call_tasks_open_by_run).
    PartialIndex(
        "ix_call_tasks_open_queue",
        "run_id",
        "kind",
        "due_at",
        "id",
        where="status IN ('open', 'claimed')",
    ),
    # The open callbacks by when they are due: the console's "my callbacks today" (0034).
    PartialIndex(
        "ix_call_tasks_open_callbacks_due",
        "due_at",
        where="kind = 'callback' AND status IN ('open', 'claimed')",
    ),
)


# A person who works call lists. ``teams`` (a JSON list such as ["renewals",
# "escalations"]) decides which call tasks they are served; ``daily_target``,
# ``weekly_target`` and ``monthly_target`` are their outbound calling plan (a weekly or
# monthly target left NULL is the daily one times the business days of the period).
agents = Table(
    "agents",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("login", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("role", String(16), default="agent", nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("daily_target", Integer, default=0, nullable=False),
    Column("weekly_target", Integer, default=None),
    Column("monthly_target", Integer, default=None),
    Column("teams", JSONDict, default=list, nullable=False),
    # Languages they speak (["zh", "en"]): a member's task goes first to an agent who speaks
    # the member's language (engine/calls/language_routing.py); [] = served as before.
    Column("languages", JSONDict, default=list, server_default=text("'[]'"), nullable=False),
    Column("active", Boolean, default=True, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("login"),
    CheckConstraint(is_one_of("role", AGENT_ROLES), name="role"),
    CheckConstraint("weekly_target >= 0", name="weekly_target"),
    CheckConstraint("monthly_target >= 0", name="monthly_target"),
)


# An agent away from the phone with a reason code (break, training, meeting...): from
# ``started_at`` to ``ended_at`` (NULL while it lasts; at most one open pause per agent).
# Paused time is neither talk (handle) time nor idle time (engine/calls/pauses.py).
agent_pauses = Table(
    "agent_pauses",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("agent", String(64), nullable=False),  # the agent's login
    Column("code", String(32), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("ended_at", UTCDateTime()),
    # resumed, next call, signed out
    Column("end_reason", String(32)),
    Column("started_by", String(64), nullable=False),  # the agent, or "cli"
    Column("ended_by", String(64)),
    Index(None, "agent", "started_at"),
    PartialIndex(
        "uq_agent_pauses_open",
        "agent",
        unique=True,
        where="ended_at IS NULL",
    ),
)


# The caller log: one row per documented call, append-only and chained with a keyed MAC.
#
# ``hash`` = HMAC(key, prev_hash + canonical JSON of the other columns, in which the personal
# columns appear only as ``personal_digest`` = HMAC(key, their canonical JSON)); the key is
# never in the database (engine/calls/log_key.py). Erasure empties the personal columns and
# sets ``erased_at``; the chain still verifies. ``chain``: 'hmac', or 'sha256' for entries
# written before migration 0020 (unkeyed). ``seq`` is the position in the chain (UNIQUE: two
# appenders can never both write entry n, so the chain cannot fork). No foreign keys on
# purpose: the audit trail outlives the tasks and participants it names, and on PostgreSQL a
# trigger refuses UPDATE (but erasure's) and DELETE (a cascade would be one).
caller_log = Table(
    "caller_log",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("task_id", Integer),
    Column("participant_id", Integer, nullable=False),
    Column("external_id", String(128)),
    Column("program", String(64), nullable=False),
    Column("campaign", String(64)),
    Column("run_id", Integer),
    Column("task_kind", String(16), nullable=False),
    Column("agent", String(64), nullable=False),
    Column("number_dialled", String(20)),
    Column("disposition", String(32), nullable=False),
    Column("human_contact", Boolean, nullable=False),
    Column("verified", Boolean),
    Column("fields", JSONDict, default=dict),
    Column("notes", Text),
    # the standard call record rendered from the template (NULL once erased)
    Column("record", Text),
    Column("claimed_at", UTCDateTime()),
    Column("logged_at", UTCDateTime(), nullable=False),
    Column("handle_seconds", Integer),
    Column("attempt", Integer, nullable=False),
    Column("source", String(16), nullable=False),  # 'agent' (calls log) or 'dialer' (import)
    Column("chain", String(8), default="hmac", server_default="sha256", nullable=False),
    Column("personal_digest", String(64)),
    Column("erased_at", UTCDateTime()),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("seq"),
    Index(None, "agent", "logged_at"),
    Index(None, "participant_id", "logged_at"),
    Index(None, "task_id"),
)


# A signed (seq, head) of the caller log, written with every append: a log whose tail or
# whole content was deleted no longer reaches its newest checkpoint. Append-only like the log
# (a PostgreSQL trigger); ``signature`` = HMAC(key, "checkpoint:seq:head:at").
caller_log_checkpoints = Table(
    "caller_log_checkpoints",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("seq", Integer, index=True, nullable=False),
    Column("head", String(64), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("signature", String(64), nullable=False),
)
