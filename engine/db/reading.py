"""What a read-only query runs on: an ORM Session, or a plain Connection for a command that
never imports sqlalchemy.orm (the everyday commands, #18)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from sqlalchemy import Connection

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

Reader: TypeAlias = "Connection | Session"


def dialect_name(db: Reader) -> str:
    """ "sqlite" or "postgresql", whichever ``db`` is."""
    if isinstance(db, Connection):
        return db.dialect.name
    return db.get_bind().dialect.name
