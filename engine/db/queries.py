"""Query helpers both databases share."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import ARRAY, BigInteger, all_, any_, literal
from sqlalchemy.orm import Session


def any_of(column: Any, values: Collection[Any], postgres: bool, kind: Any = BigInteger) -> Any:
    """``column IN (values)``; on PostgreSQL (``postgres``) ``= ANY(array)``: one parameter
    instead of a thousand, which psycopg would otherwise parse out of a new statement text
    every time (a dialer chunk, a dispatcher's batch)."""
    if postgres:
        return column == any_(literal(list(values), ARRAY(kind)))
    return column.in_(values)


def none_of(column: Any, values: Collection[Any], postgres: bool, kind: Any = BigInteger) -> Any:
    """``column NOT IN (values)``; on PostgreSQL ``<> ALL(array)``, one parameter (as
    :func:`any_of`): the statement's text no longer grows with the list."""
    if postgres:
        return column != all_(literal(list(values), ARRAY(kind)))
    return column.notin_(values)


def among(session: Session, column: Any, values: Collection[Any], kind: Any = BigInteger) -> Any:
    """:func:`any_of` for the database ``session`` is bound to."""
    return any_of(column, values, session.get_bind().dialect.name == "postgresql", kind)
