"""What a read-only query runs on: an ORM Session, or a plain Connection for a command that
never imports sqlalchemy.orm (the everyday commands, #18)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, TypeAlias

from sqlalchemy import Connection, Table, select

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

Reader: TypeAlias = "Connection | Session"


def dialect_name(db: Reader) -> str:
    """ "sqlite" or "postgresql", whichever ``db`` is."""
    if isinstance(db, Connection):
        return db.dialect.name
    return db.get_bind().dialect.name


def row_by_id(db: Reader, table: Table, row_id: int) -> Any:
    """The row of ``table`` whose ``id`` is ``row_id`` (attribute access by column name), or
    None. On a Session, its mapped object: from the identity map when the session holds it
    already (the console's page reads the claim with its member and program in one
    statement), so that costs no SELECT."""
    if isinstance(db, Connection):
        return db.execute(select(table).where(table.c.id == row_id)).first()
    return db.get(_mapped_class(table), row_id)


@functools.cache
def _mapped_class(table: Table) -> type[Any]:
    from engine.db.models import Base

    return next(m.class_ for m in Base.registry.mappers if m.local_table is table)
