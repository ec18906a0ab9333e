"""Migration 0035 (#20): a new message takes two outbox index entries fewer. A run's messages
are read by one (run_id, status) index, its pending ones too; the purge's index holds only
settled messages. The pending check reads its index on both databases, the purge its own on
PostgreSQL, and the migration round-trips."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.dialects import postgresql, sqlite

from engine.db import migrate
from engine.db.models import Base
from engine.db.session import make_engine
from engine.retention import purgeable
from engine.run_work import PENDING_MESSAGES, _source

AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def _plan(c: Connection, query: Any) -> str:
    """The plan of a Core query, its parameters inlined (as the database sees them once
    bound); PostgreSQL is kept off sequential scans (a table of a few rows)."""
    dialect = postgresql.dialect() if c.dialect.name == "postgresql" else sqlite.dialect()
    sql = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    if c.dialect.name == "sqlite":
        return " ".join(str(row[-1]) for row in c.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    c.exec_driver_sql("SET LOCAL enable_seqscan = off")
    return " ".join(str(row[0]) for row in c.exec_driver_sql(f"EXPLAIN {sql}"))


def test_0035_outbox_indexes_round_trip_and_are_read(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)

    def outbox_indexes() -> dict[str, list[str]]:
        return {
            str(i["name"]): [str(c) for c in i["column_names"]]
            for i in inspect(engine).get_indexes("outbox_messages")
        }

    def unpurged_where() -> str:
        index = next(
            i
            for i in inspect(engine).get_indexes("outbox_messages")
            if i["name"] == "ix_outbox_messages_unpurged"
        )
        options = index.get("dialect_options", {})
        return str(options.get("sqlite_where" if sqlite_db else "postgresql_where"))

    sqlite_db = engine.dialect.name == "sqlite"
    try:
        migrate.upgrade(engine, "0034")
        before = outbox_indexes()
        assert before["ix_outbox_messages_run_id_step_id_status"] == ["run_id", "step_id", "status"]
        assert "ix_outbox_messages_pending_by_run" in before

        migrate.upgrade(engine, "0035")
        after = outbox_indexes()
        assert after["ix_outbox_messages_run_id_status"] == ["run_id", "status"]
        assert "ix_outbox_messages_run_id_step_id_status" not in after
        assert "ix_outbox_messages_pending_by_run" not in after
        assert "'sent'" in unpurged_where() and "'queued'" not in unpurged_where()
        migrate.upgrade(engine)  # the later migrations, for the comparison with the models
        with engine.connect() as c:
            context = MigrationContext.configure(c, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        with engine.begin() as c:
            # "Has this run a pending message?" (as has_work asks it of each run) probes the
            # (run_id, status) index...
            table, _, pending = PENDING_MESSAGES
            source = _source(PENDING_MESSAGES, engine.dialect.name)
            plan = _plan(c, text(f"SELECT 1 FROM {source} WHERE {table}.run_id = 1 AND {pending}"))
            assert "ix_outbox_messages_run_id_status" in plan, plan
        if not sqlite_db:  # SQLite, without statistics, probes (status, not_before) as before
            with engine.begin() as c:
                # ... and the purge reads the partial index of the settled messages not purged.
                purge = _plan(c, purgeable(AT, 5000))
                assert "ix_outbox_messages_unpurged" in purge, purge

        command.downgrade(migrate.alembic_config(engine), "0034")
        assert outbox_indexes() == before
        assert "'sent'" not in unpurged_where()
    finally:
        engine.dispose()
