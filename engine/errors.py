"""One error hierarchy. Messages are written for the person at the keyboard and name the
file, row, field or id at fault; the CLI shows them without a traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterable


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(EngineError):
    """Settings or environment are wrong."""


class DatabaseError(EngineError):
    """The database cannot be used as it is (unreachable, behind the migrations...)."""


class SchemaBehindError(DatabaseError):
    """The database schema is older than the code."""


class NotFoundError(EngineError):
    """A named thing (program, participant, campaign, run...) does not exist."""


class InputError(EngineError):
    """User input is malformed: a file, an option value, a field."""


class DefinitionError(InputError):
    """A campaign definition file is invalid; carries file, line and field."""

    def __init__(self, path: str, line: int | None, field: str, message: str) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.detail = message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where} {field}: {message}" if field else f"{where}: {message}")


class DefinitionErrors(InputError):
    """Several definition errors at once; str() lists them one per line."""

    def __init__(self, errors: Iterable[DefinitionError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


def database_locked(exc: BaseException) -> bool:
    """SQLite's "database is locked" (or busy): another process held the write lock past the
    busy timeout. SQLAlchemy's wrapper, or the driver's own error where the work runs on the
    raw sqlite3 connection (the imports). Looked up in sys.modules: neither is imported for
    this, and a process that loaded neither (--help) cannot have raised them."""
    wrapper = getattr(sys.modules.get("sqlalchemy.exc"), "OperationalError", None)
    driver = getattr(sys.modules.get("sqlite3"), "OperationalError", None)
    if wrapper is not None and isinstance(exc, wrapper):
        message = str(exc.orig).lower()
    elif driver is not None and isinstance(exc, driver):
        message = str(exc).lower()
    else:
        return False
    return "database is locked" in message or "database is busy" in message
