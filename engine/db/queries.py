"""Query helpers both databases share."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import ARRAY, BigInteger, any_, literal
from sqlalchemy.orm import Session


def among(session: Session, column: Any, values: Collection[Any], kind: Any = BigInteger) -> Any:
    """``column IN (values)``; on PostgreSQL ``= ANY(array)``: one parameter instead of a
    thousand, which psycopg would otherwise parse out of a new statement text every time
    (as engine/sending/shared.py's ``among`` does for the dispatcher)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(literal(list(values), ARRAY(kind)))
    return column.in_(values)
