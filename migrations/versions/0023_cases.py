"""cases and case_events; call_tasks.case_id

Revision ID: 0023
Revises: 0027
Create Date: 2026-12-08 10:00:00

A case (engine/cases) holds a complaint, an escalation or a request for help together until
it is closed: owner, status, due time, root cause, and a history linking the caller log
entries of its calls. A call task that follows a case up names it (call_tasks.case_id).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types

revision: str = "0023"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = engine.db.types.UTCDateTime(timezone=True)
_ACTIVE = "status IN ('open', 'waiting_on_member', 'waiting_on_us')"


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", _ID, nullable=False),
        sa.Column("participant_id", _ID, nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("owner_agent", sa.String(length=64), nullable=True),
        sa.Column("owner_team", sa.String(length=64), nullable=True),
        sa.Column("opened_by", sa.String(length=64), nullable=False),
        sa.Column("opened_at", _TS, nullable=False),
        sa.Column("due_at", _TS, nullable=False),
        sa.Column("resolved_at", _TS, nullable=True),
        sa.Column("root_cause", sa.String(length=64), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("closed_at", _TS, nullable=True),
        sa.Column("reopened", sa.Integer(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'waiting_on_member', 'waiting_on_us', 'resolved', 'closed')",
            name=op.f("ck_cases_status"),
        ),
        sa.CheckConstraint(
            "status NOT IN ('resolved', 'closed') OR root_cause IS NOT NULL",
            name=op.f("ck_cases_root_cause"),
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_cases_participant_id_participants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_cases_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
    )
    op.create_index(
        "uq_cases_active_per_category",
        "cases",
        ["participant_id", "category"],
        unique=True,
        sqlite_where=sa.text(_ACTIVE),
        postgresql_where=sa.text(_ACTIVE),
    )
    op.create_index(op.f("ix_cases_status_due_at"), "cases", ["status", "due_at"])
    op.create_index(op.f("ix_cases_program_id_opened_at"), "cases", ["program_id", "opened_at"])

    op.create_table(
        "case_events",
        sa.Column("id", _ID, nullable=False),
        sa.Column("case_id", _ID, nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("by", sa.String(length=64), nullable=False),
        sa.Column("status_from", sa.String(length=24), nullable=True),
        sa.Column("status_to", sa.String(length=24), nullable=True),
        sa.Column("caller_log_id", sa.BigInteger(), nullable=True),
        sa.Column("call_task_id", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_case_events_case_id_cases"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_events")),
    )
    op.create_index(op.f("ix_case_events_case_id_at"), "case_events", ["case_id", "at"])

    with op.batch_alter_table("call_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("case_id", _ID, nullable=True))
        batch_op.create_index(batch_op.f("ix_call_tasks_case_id"), ["case_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_call_tasks_case_id_cases"),
            "cases",
            ["case_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("call_tasks", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_call_tasks_case_id_cases"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_call_tasks_case_id"))
        batch_op.drop_column("case_id")
    op.drop_index(op.f("ix_case_events_case_id_at"), table_name="case_events")
    op.drop_table("case_events")
    op.drop_index(op.f("ix_cases_program_id_opened_at"), table_name="cases")
    op.drop_index(op.f("ix_cases_status_due_at"), table_name="cases")
    op.drop_index("uq_cases_active_per_category", table_name="cases")
    op.drop_table("cases")
