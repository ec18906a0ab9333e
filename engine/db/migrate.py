"""Alembic from code: upgrade, current revision, and the start-up check that the schema is
current. Migrations never run silently at start-up; the user runs `campaign db upgrade`.

The start-up check runs before every command, so it does not import Alembic (about a third of
a command's start-up time): the database's revision is one SELECT, and the head is read from
the version files' `revision` / `down_revision` lines. Alembic is imported only to migrate, to
explain a revision it does not know, or when the version files are not in that plain form.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError, OperationalError

import migrations
from engine.errors import DatabaseError, SchemaBehindError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(migrations.__file__).parent
VERSION_TABLE = "alembic_version"  # Alembic's default; migrations/env.py does not change it

# `revision: str = "0007"` and `down_revision: str | None = "0006"` (or `= None`), as
# `alembic revision` writes them, at the start of a line. The patterns start with "\n" (each
# file is read with one put before it), not ^: a pattern that starts with a literal is found by
# a string search, 3-5x faster (every command that opens the database reads every file, #18).
_REVISION_LINE = re.compile(r"""\nrevision\s*(?::[^=\n]*)?=\s*['"]([\w-]+)['"]\s*$""", re.M)
_DOWN_REVISION_LINE = re.compile(
    r"""\ndown_revision\s*(?::[^=\n]*)?=\s*(?:None|['"]([\w-]+)['"])\s*$""", re.M
)


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def head_revision(engine: Engine) -> str | None:
    return _head_of_scripts()


@functools.cache
def _head_of_scripts() -> str | None:
    # The scripts of one installed engine never change while it runs: read them once.
    return _head_from_version_lines() or _head_from_alembic()


def _head_from_version_lines() -> str | None:
    """The one revision no other names as its down_revision, or None when any version file is
    not in the plain form (a merge, a branch label, a computed value) or there is not exactly
    one head: Alembic then decides."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        source = "\n" + path.read_text("utf-8")
        if path.name == "__init__.py" and not source.strip():
            continue
        revision = _REVISION_LINE.findall(source)
        down = _DOWN_REVISION_LINE.findall(source)
        if len(revision) != 1 or len(down) != 1:
            return None
        revisions.add(revision[0])
        if down[0]:
            parents.add(down[0])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else None


def _head_from_alembic() -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The database's revision (what Alembic's MigrationContext reads), None when empty."""
    try:
        with engine.connect() as connection:
            try:
                rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
            except DBAPIError:
                # Asked only when the SELECT fails (a database with no schema yet): asking
                # first cost every command a catalogue query (#18).
                connection.rollback()
                if inspect(connection).has_table(VERSION_TABLE):
                    raise
                return None
    except OperationalError as exc:
        raise DatabaseError(f"cannot open the database {_safe_url(engine)}: {exc.orig}") from exc
    if len(rows) > 1:  # branches: this engine never makes them
        raise SchemaBehindError(
            f"the database {_safe_url(engine)} is at several revisions at once "
            f"({', '.join(sorted(r[0] for r in rows))}); this engine has one line of migrations"
        )
    return rows[0][0] if rows else None


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade to ``revision``; returns (before, after)."""
    from alembic import command

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
    from alembic.script import ScriptDirectory

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
