"""The migrations are the only way the schema changes, and they match the models exactly."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from engine.app import build_app
from engine.db import migrate
from engine.db.models import Base
from engine.db.session import make_engine
from engine.errors import SchemaBehindError
from engine.settings import Settings


def test_upgrade_from_empty_to_head_leaves_no_drift(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    try:
        before, after = migrate.upgrade(engine)
        assert before is None
        assert after == migrate.head_revision(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
        assert differences == [], f"models and migrations disagree: {differences}"
        # Upgrading again is a no-op.
        assert migrate.upgrade(engine) == (after, after)
    finally:
        engine.dispose()


def test_a_single_head() -> None:
    engine = make_engine("sqlite://")
    script = ScriptDirectory.from_config(migrate.alembic_config(engine))
    assert len(script.get_heads()) == 1, "migrations have diverged into several heads"


def test_app_refuses_an_empty_database(empty_database_url: str) -> None:
    with pytest.raises(SchemaBehindError, match="campaign db upgrade"):
        build_app(Settings(database_url=empty_database_url))


def test_app_refuses_a_database_behind_head(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    script = ScriptDirectory.from_config(migrate.alembic_config(engine))
    revisions = list(script.walk_revisions())
    if len(revisions) < 2:
        pytest.skip("only one migration exists; nothing can be behind yet")
    migrate.upgrade(engine, revisions[-1].revision)  # the first migration only
    engine.dispose()
    with pytest.raises(SchemaBehindError, match="run `campaign db upgrade`"):
        build_app(Settings(database_url=empty_database_url))
