"""console_users, console_audit: people who sign in to the browser console, and the audit

Revision ID: 0029
Revises: 0026
Create Date: 2026-12-10 10:00:00

- ``console_users``: login, role (agent, supervisor, manager, coordinator), argon2 password
  hash, the linked ``agents`` row for an agent, a session version that signs them out.
- ``console_audit``: sign-ins, failed sign-ins (which also drive the rate limit), user
  changes and role changes, with the address (engine/web/audit.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import engine.db.types

revision: str = "0029"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = engine.db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("id", _ID, nullable=False),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("agent_id", _ID, nullable=True),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("session_version", sa.Integer(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("password_set_at", _TIME, nullable=False),
        sa.CheckConstraint(
            "role IN ('agent', 'supervisor', 'manager', 'coordinator')",
            name=op.f("ck_console_users_role"),
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_console_users_agent_id_agents"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_users")),
        sa.UniqueConstraint("login", name=op.f("uq_console_users_login")),
    )
    op.create_table(
        "console_audit",
        sa.Column("id", _ID, nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_audit")),
    )
    op.create_index(
        op.f("ix_console_audit_login_event_at"), "console_audit", ["login", "event", "at"]
    )
    op.create_index(
        op.f("ix_console_audit_address_event_at"), "console_audit", ["address", "event", "at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_console_audit_address_event_at"), table_name="console_audit")
    op.drop_index(op.f("ix_console_audit_login_event_at"), table_name="console_audit")
    op.drop_table("console_audit")
    op.drop_table("console_users")
