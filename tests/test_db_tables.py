"""The Core tables' two types that defer the PostgreSQL dialect (#18) declare what they did
before: partial indexes keep their condition on both databases, and JSON columns are JSONB
on PostgreSQL, JSON text on SQLite, with the same values stored and read back."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert, inspect, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex

from engine.db.models import Base
from engine.db.session import make_engine
from engine.db.tables.base import PartialIndex
from engine.db.tables.calls import agents


def test_partial_indexes_keep_their_condition_on_both_databases() -> None:
    partial = [
        index
        for table in Base.metadata.tables.values()
        for index in table.indexes
        if isinstance(index, PartialIndex)
    ]
    assert len(partial) == 14
    for index in partial:
        for dialect in (sqlite.dialect(), postgresql.dialect()):
            ddl = str(CreateIndex(index).compile(dialect=dialect))
            assert ddl.endswith(f" WHERE {index.where_sql}"), (dialect.name, ddl)
        assert str(index.dialect_kwargs["postgresql_where"]) == index.where_sql


def test_json_columns_are_jsonb_on_postgresql_and_round_trip(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        column_types = {c["name"]: c["type"] for c in inspect(engine).get_columns("agents")}
        if engine.dialect.name == "postgresql":
            assert isinstance(column_types["teams"], postgresql.JSONB)
        teams = ["renewals", "escalations \u00e9"]
        with engine.begin() as connection:
            connection.execute(
                insert(agents).values(
                    login="ann",
                    name="Ann",
                    timezone="UTC",
                    teams=teams,
                    created_at=datetime(2026, 1, 5, tzinfo=UTC),
                )
            )
            row = connection.execute(select(agents.c.teams, agents.c.languages)).one()
            assert (row.teams, row.languages) == (teams, [])
            stored = connection.execute(text("SELECT teams FROM agents")).scalar_one()
            if engine.dialect.name == "sqlite":
                assert stored == '["renewals", "escalations \\u00e9"]'
    finally:
        engine.dispose()
