"""Query helpers both databases share."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import ARRAY, BigInteger, String, all_, any_, bindparam, func, literal

if TYPE_CHECKING:
    from sqlalchemy.orm import Session  # not imported by a claim on a Core connection (#18)


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


def any_of_bound(
    column: Any, name: str, postgres: bool, kind: Any = BigInteger, *, negate: bool = False
) -> Any:
    """:func:`any_of` (or, ``negate``, :func:`none_of`) of a list bound later as ``name``, for a
    statement built once and run with its values (the claim's, #19): PostgreSQL one array
    parameter of ``kind``, SQLite an expanding IN."""
    if postgres:
        values = bindparam(name, type_=ARRAY(kind))
        return column != all_(values) if negate else column == any_(values)
    listed: Any = bindparam(name, expanding=True)
    return column.notin_(listed) if negate else column.in_(listed)


def gathered(column: Any, postgres: bool) -> Any:
    """SQL aggregate: ``column``'s values as one value, so that a list rides along in a
    statement that reads something else (a round trip fewer, #19): PostgreSQL ``array_agg``,
    SQLite ``json_group_array``. Read it back with :func:`gathered_values`."""
    if postgres:
        return func.array_agg(column, type_=ARRAY(column.type))
    return func.json_group_array(column, type_=String())


def gathered_values(value: Any) -> list[Any]:
    """The list a :func:`gathered` column holds (PostgreSQL's array is NULL over no rows)."""
    if value is None:
        return []
    if isinstance(value, str):
        return list(json.loads(value))
    return list(value)


def among(session: Session, column: Any, values: Collection[Any], kind: Any = BigInteger) -> Any:
    """:func:`any_of` for the database ``session`` is bound to."""
    return any_of(column, values, session.get_bind().dialect.name == "postgresql", kind)


def int_array(values: Iterable[int]) -> str:
    """PostgreSQL's text form of an array of integers (``{1,2,3}``), to bind as ONE parameter
    of ``= ANY(%s::bigint[])`` in raw SQL: the statement's text stays the same from batch to
    batch, so psycopg prepares it once (a literal IN-list of 2,000 ids was parsed and planned
    anew each time: 4 us of the server per id, 1-1.5 with the array), and the text costs the
    client less than a list of ints to dump (0.4 us an id, not 1). Refuses anything but
    integers."""
    return "{" + ",".join(str(int(v)) for v in values) + "}"
