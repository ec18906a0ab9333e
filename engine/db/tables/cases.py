"""Cases: complaints and escalations followed through several contacts.

Core tables (engine/db/tables/__init__.py says why)."""

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from engine.db.tables.base import PartialIndex, is_one_of, metadata
from engine.db.types import BigIntId, UTCDateTime

CASE_STATUSES = ("open", "waiting_on_member", "waiting_on_us", "resolved", "closed")
# Statuses of a case still being worked (one such case per member and category).
CASE_ACTIVE_STATUSES = ("open", "waiting_on_member", "waiting_on_us")

# A complaint, escalation or request followed through several contacts until it is
# closed (engine/cases). One active case per (participant, category): a partial unique
# index, so a second complaint joins the first even when two agents log at once. ``due_at``
# comes from the program's service level for the category; ``root_cause`` is set when it is
# resolved, from the program's list.
cases = Table(
    "cases",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("program_id", BigIntId, ForeignKey("programs.id"), nullable=False),
    Column(
        "participant_id",
        BigIntId,
        ForeignKey("participants.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("category", String(32), nullable=False),
    Column("summary", Text),
    Column("status", String(24), default="open", nullable=False),
    Column("source", String(16), nullable=False),  # call / sms / manual
    Column("owner_agent", String(64)),
    Column("owner_team", String(64)),
    Column("opened_by", String(64), nullable=False),
    Column("opened_at", UTCDateTime(), nullable=False),
    Column("due_at", UTCDateTime(), nullable=False),
    Column("resolved_at", UTCDateTime()),
    Column("root_cause", String(64)),
    Column("resolution", Text),
    Column("closed_at", UTCDateTime()),
    Column("reopened", Integer, default=0, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    CheckConstraint(is_one_of("status", CASE_STATUSES), name="status"),
    CheckConstraint(
        "status NOT IN ('resolved', 'closed') OR root_cause IS NOT NULL", name="root_cause"
    ),
    PartialIndex(
        "uq_cases_active_per_category",
        "participant_id",
        "category",
        unique=True,
        where=f"status IN {CASE_ACTIVE_STATUSES!r}",
    ),
    Index(None, "status", "due_at"),
    Index(None, "program_id", "opened_at"),
)


# A case's history, in order: opened, call (linked to its caller log entry), note,
# message (the member's SMS), assigned, status changes, resolved, reopened, closed; each
# with who (an agent's login, ``member`` or ``system``) and when.
case_events = Table(
    "case_events",
    metadata,
    Column("id", BigIntId, primary_key=True),
    Column("case_id", BigIntId, ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("by", String(64), nullable=False),
    Column("status_from", String(24)),
    Column("status_to", String(24)),
    # The call's caller log entry; no foreign key, as none points into the audit trail (a
    # TRUNCATE of it must meet its trigger, not a constraint).
    Column("caller_log_id", BigInteger),
    Column("call_task_id", Integer),
    Column("text", Text),
    Index(None, "case_id", "at"),
)
