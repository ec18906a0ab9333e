"""outbox tallies for the campaign report

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 15:10:00

`campaign report campaign` over 10,000,000 outbox rows must answer in <= 1 s on PostgreSQL
and <= 4 s on SQLite (#6; bench/bench_reports.py). Counting the rows cannot: even an
index-only count of 10M index entries takes about 0.5 s on PostgreSQL on its own. So the
funnel reads `outbox_tallies` (engine.db.models.OutboxTally), a few hundred rows per run:
triggers on outbox_messages append +1/-1 rows on every insert, delete and change of status,
skip reason, variant, open or click (writers only INSERT: no shared counter row to wait
on), and the tick folds them (engine.reports.tallies). On PostgreSQL they are statement
triggers over transition tables, appending one row per key a statement moved, net; SQLite
has only row triggers, appending a row per outbox row. The upgrade counts the existing
outbox once; the triggers exist before that count, and on PostgreSQL creating them
(SHARE ROW EXCLUSIVE) waits for outbox writes in progress and locks out new ones until the
migration commits: a write is either committed before the count and counted by it, or runs
after the commit and fires the triggers, so no change is missed or counted twice.

ix_outbox_messages_variants (partial: A/B messages only) lets the report find, for each
conversion, the variant its member was sent without reading the outbox table itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
_KEY = "run_id, step_id, channel, variant, status, reason"
_COUNTS = "messages, opened, clicked"


def _row(ref: str, sign: str, cast: str) -> str:
    """The tally row of an outbox row (ref: NEW or OLD), counted with sign +/-."""
    return (
        f"({ref}.run_id, {ref}.step_id, {ref}.channel, {ref}.variant, {ref}.status, "
        f"CASE WHEN {ref}.status = 'skipped' THEN {ref}.status_reason END, {sign}1, "
        f"{sign}({ref}.opened_at IS NOT NULL){cast}, {sign}({ref}.clicked_at IS NOT NULL){cast})"
    )


def _changed(distinct: str) -> str:
    """An UPDATE that moves the row to another tally key or changes its open/click."""
    columns = ("run_id", "step_id", "channel", "variant", "status", "status_reason")
    return " OR ".join(
        [f"OLD.{c} {distinct} NEW.{c}" for c in columns]
        + [f"(OLD.{c} IS NULL) <> (NEW.{c} IS NULL)" for c in ("opened_at", "clicked_at")]
    )


INSERT = f"INSERT INTO outbox_tallies ({_KEY}, {_COUNTS}) VALUES "


def _signed(table: str, sign: str) -> str:
    """The tally rows of a PostgreSQL transition table, each counted with sign +/-."""
    return (
        "SELECT run_id, step_id, channel, variant, status, "
        "CASE WHEN status = 'skipped' THEN status_reason END AS reason, "
        f"{sign}1 AS messages, {sign}(opened_at IS NOT NULL)::int AS opened, "
        f"{sign}(clicked_at IS NOT NULL)::int AS clicked FROM {table}"
    )


def _insert_net(*signed: str) -> str:
    """One INSERT of the net counts per key: keys a statement left as they were (a lease, an
    attempt, a status written again, an open of an opened message) sum to zero, add nothing."""
    return (
        f"INSERT INTO outbox_tallies ({_KEY}, {_COUNTS}) "
        f"SELECT {_KEY}, sum(messages), sum(opened), sum(clicked) "
        f"FROM ({' UNION ALL '.join(signed)}) AS delta GROUP BY {_KEY} "
        "HAVING sum(messages) <> 0 OR sum(opened) <> 0 OR sum(clicked) <> 0"
    )


# (event, transition tables, what its trigger inserts): PostgreSQL allows transition tables
# only on a trigger for a single event.
_PG_TRIGGERS = (
    ("insert", "NEW TABLE AS new_rows", _insert_net(_signed("new_rows", ""))),
    (
        "update",
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        _insert_net(_signed("old_rows", "-"), _signed("new_rows", "")),
    ),
    ("delete", "OLD TABLE AS old_rows", _insert_net(_signed("old_rows", "-"))),
)


def upgrade() -> None:
    op.create_table('outbox_tallies',
    sa.Column('id', _ID, nullable=False),
    sa.Column('run_id', _ID, nullable=False),
    sa.Column('step_id', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('variant', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('messages', sa.Integer(), nullable=False),
    sa.Column('opened', sa.Integer(), nullable=False),
    sa.Column('clicked', sa.Integer(), nullable=False),
    sa.Column('state', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_tallies'))
    )
    with op.batch_alter_table('outbox_tallies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_tallies_run_id'), ['run_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_tallies_state_run_id'), ['state', 'run_id'], unique=False)

    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_messages_variants', ['enrollment_id', 'step_id', 'status', 'variant', 'sent_at'], unique=False, sqlite_where=sa.text('variant IS NOT NULL'), postgresql_where=sa.text('variant IS NOT NULL'))

    if op.get_bind().dialect.name == 'postgresql':
        # Statement triggers: one INSERT of the net counts per key for a whole statement (a
        # claim of 1,000 rows adds two tally rows, not 2,000 through 2,000 trigger calls).
        for event, transition, insert_net in _PG_TRIGGERS:
            op.execute(
                f"""
                CREATE FUNCTION outbox_tally_{event}() RETURNS trigger AS $$
                BEGIN
                    {insert_net};
                    RETURN NULL;
                END;
                $$ LANGUAGE plpgsql
                """
            )
            op.execute(
                f"CREATE TRIGGER outbox_tally_{event} AFTER {event.upper()} ON outbox_messages "
                f"REFERENCING {transition} FOR EACH STATEMENT "
                f"EXECUTE FUNCTION outbox_tally_{event}()"
            )
    else:
        op.execute(
            "CREATE TRIGGER outbox_tally_insert AFTER INSERT ON outbox_messages "
            f"BEGIN {INSERT} {_row('NEW', '', '')}; END"
        )
        op.execute(
            "CREATE TRIGGER outbox_tally_delete AFTER DELETE ON outbox_messages "
            f"BEGIN {INSERT} {_row('OLD', '-', '')}; END"
        )
        op.execute(
            f"CREATE TRIGGER outbox_tally_update AFTER UPDATE ON outbox_messages "
            f"WHEN {_changed('IS NOT')} "
            f"BEGIN {INSERT} {_row('OLD', '-', '')}, {_row('NEW', '', '')}; END"
        )
    # What the outbox holds already, folded (state 1).
    op.execute(
        f"INSERT INTO outbox_tallies ({_KEY}, {_COUNTS}, state) "
        "SELECT run_id, step_id, channel, variant, status, "
        "CASE WHEN status = 'skipped' THEN status_reason END, "
        "count(*), count(opened_at), count(clicked_at), 1 "
        "FROM outbox_messages GROUP BY 1, 2, 3, 4, 5, 6"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for event, _, _ in _PG_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS outbox_tally_{event} ON outbox_messages")
            op.execute(f"DROP FUNCTION IF EXISTS outbox_tally_{event}()")
    else:
        for name in ("outbox_tally_update", "outbox_tally_delete", "outbox_tally_insert"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_messages_variants', sqlite_where=sa.text('variant IS NOT NULL'), postgresql_where=sa.text('variant IS NOT NULL'))
    with op.batch_alter_table('outbox_tallies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_tallies_state_run_id'))
        batch_op.drop_index(batch_op.f('ix_outbox_tallies_run_id'))
    op.drop_table('outbox_tallies')
