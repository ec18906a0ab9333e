"""Alembic from code: upgrade, current revision, and the start-up check that the schema is
current. Migrations never run silently at start-up; the user runs `campaign db upgrade`."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

import migrations
from engine.errors import DatabaseError, SchemaBehindError

MIGRATIONS_DIR = Path(migrations.__file__).parent


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def head_revision(engine: Engine) -> str | None:
    return _head_of_scripts()


@functools.cache
def _head_of_scripts() -> str | None:
    # The scripts of one installed engine never change while it runs; reading them costs
    # ~40 ms, paid by every CLI invocation a long-lived process (a test, the web app) makes.
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except OperationalError as exc:
        raise DatabaseError(f"cannot open the database {_safe_url(engine)}: {exc.orig}") from exc


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade to ``revision``; returns (before, after)."""
    before = current_revision(engine)
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return before, current_revision(engine)


def ensure_current(engine: Engine) -> None:
    """Refuse to work on a database whose schema is behind (or ahead of) this code."""
    current, head = current_revision(engine), head_revision(engine)
    if current == head:
        return
    if current is None:
        raise SchemaBehindError(
            f"the database {_safe_url(engine)} has no schema yet; run `campaign db upgrade`"
        )
    script = ScriptDirectory.from_config(alembic_config(engine))
    known = {rev.revision for rev in script.walk_revisions()}
    if current not in known:
        raise SchemaBehindError(
            f"the database {_safe_url(engine)} is at revision {current}, which this version of "
            "the engine does not know (was it migrated by a newer version?)"
        )
    raise SchemaBehindError(
        f"the database {_safe_url(engine)} is at revision {current} but the engine needs {head}; "
        "run `campaign db upgrade`"
    )


def _safe_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)
