"""A campaign call step's priority (its ``priority`` keys: participant fields, asc/desc, empty
values last) in two forms that must agree: :func:`rank` orders loaded candidates in Python
(the whole list, `calls list`), :func:`priority_order` is the SQL ORDER BY a claim reads a
step with, a page at a time, so a claim never loads a whole step to rank it.

The order of one key's values (Python's and SQL's):

- empty (NULL, an absent attribute, JSON null) last, whatever the direction;
- numbers and booleans (true = 1, false = 0) by value, then dates, then text in code-point
  order (SQLite's BINARY collation, COLLATE "C" on PostgreSQL); descending reverses that;
- an attribute holding a list or an object ranks after every text, all such values tied
  (their order would depend on how each database spells JSON);
- ties keep the next key's order, and at the end due time, then task id.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Integer, Numeric, String, case, cast, func, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from engine.db.reading import Reader, dialect_name
from engine.db.tables.calls import call_tasks
from engine.db.tables.members import participants
from engine.errors import InputError

if TYPE_CHECKING:
    from engine.calls.claim_form import StepForm

ATTRIBUTE_PREFIX = "attributes."
# The classes of values, in ascending order (the first element of :func:`sortable`).
NUMBER, DATE, TEXT, COMPOSITE = 0, 1, 2, 3


def priority_value(participant: Any, name: str) -> Any:
    if name.startswith(ATTRIBUTE_PREFIX):
        return (getattr(participant, "attributes", None) or {}).get(name[len(ATTRIBUTE_PREFIX) :])
    return getattr(participant, name, None)


def sortable(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool):
        return (NUMBER, int(value))
    if isinstance(value, int | float):
        return (NUMBER, value)
    if isinstance(value, datetime | date):
        return (DATE, value.isoformat())
    if isinstance(value, list | dict):
        return (COMPOSITE, 0)
    return (TEXT, str(value))


def rank(candidates: Sequence[Any]) -> None:
    """Each candidate's position among the tasks of its kind in its campaign step, by the
    step's priority keys (the groups engine.calls.tasks.serving_order streams, so both
    agree). Candidates have ``task``, ``participant``, ``step`` and get ``rank``."""
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for c in candidates:
        group = (c.task.run_id, c.step.id if c.step else None, c.task.kind)
        groups.setdefault(group, []).append(c)
    for members in groups.values():
        keys = members[0].step.priority if members[0].step else []
        ordered = list(members)
        # Stable sorts from the last key to the first give a multi-key order with per-key
        # direction; empty values always last.
        ordered.sort(key=lambda c: (c.task.due_at, c.task.id))
        for key in reversed(keys):
            name = key.field
            values = {id(c): priority_value(c.participant, name) for c in ordered}
            present = [c for c in ordered if values[id(c)] is not None]
            missing = [c for c in ordered if values[id(c)] is None]
            present.sort(key=lambda c: sortable(values[id(c)]), reverse=key.order == "desc")
            ordered = present + missing
        for index, c in enumerate(ordered):
            c.rank = index


def priority_order(session: Reader, step: StepForm | None) -> list[Any]:
    """The SQL ORDER BY of a step's priority, the same order as :func:`rank`."""
    keys = step.priority if step is not None else []
    person_t = participants
    postgres = dialect_name(session) == "postgresql"
    order: list[Any] = []
    for key in keys:
        columns: list[Any]
        if key.field.startswith(ATTRIBUTE_PREFIX):
            name = key.field[len(ATTRIBUTE_PREFIX) :]
            # The value's class decides emptiness (NULL) and the order between classes; only
            # one of number and text is not NULL within a class.
            columns = [_AttributeKey(name, part) for part in ("class", "number", "text")]
        else:
            column: Any = person_t.c[key.field]
            if postgres and isinstance(column.type, String):
                column = column.collate("C")  # Python's (code point) order, like SQLite's
            columns = [column]
        for column in columns:
            order.append(
                column.desc().nulls_last() if key.order == "desc" else column.asc().nulls_last()
            )
    return [*order, call_tasks.c.due_at, call_tasks.c.id]


class _AttributeKey(ColumnElement[Any]):
    """One part of an attribute's sort key: its class (NULL when empty), its number (numbers
    and booleans) or its text (strings), read from the participant's JSON attributes."""

    inherit_cache = True
    _traverse_internals = [  # noqa: RUF012
        ("attr_key", InternalTraversal.dp_string),
        ("part", InternalTraversal.dp_string),
    ]

    def __init__(self, key: str, part: str) -> None:
        self.attr_key = key
        self.part = part  # "class" | "number" | "text"
        types: dict[str, Any] = {"class": Integer(), "number": Numeric(), "text": String()}
        self.type = types[part]


@compiles(_AttributeKey, "sqlite")
def _key_sqlite(element: _AttributeKey, compiler: SQLCompiler, **kw: Any) -> str:
    column = participants.c.attributes
    path = literal(f'$."{element.attr_key}"')
    kind = func.json_type(column, path)
    value = func.json_extract(column, path)
    expr: Any
    if element.part == "class":
        expr = case(
            (kind.in_(["integer", "real", "true", "false"]), NUMBER),
            (kind == "text", TEXT),
            (kind.in_(["array", "object"]), COMPOSITE),
        )
    elif element.part == "number":
        # SQLite compares integers and reals by value, exactly: no cast.
        expr = case(
            (kind.in_(["integer", "real"]), value), (kind == "true", 1), (kind == "false", 0)
        )
    else:
        expr = case((kind == "text", value))  # BINARY: code-point order
    return compiler.process(expr, **kw)


@compiles(_AttributeKey, "postgresql")
def _key_postgresql(element: _AttributeKey, compiler: SQLCompiler, **kw: Any) -> str:
    column = participants.c.attributes
    kind = func.jsonb_typeof(column.op("->")(literal(element.attr_key, String())))
    # ->> gives text: typed so, a comparison binds text, not the column's JSON type.
    text_value = column.op("->>", return_type=String())(literal(element.attr_key, String()))
    expr: Any
    if element.part == "class":
        expr = case(
            (kind.in_(["number", "boolean"]), NUMBER),
            (kind == "string", TEXT),
            (kind.in_(["array", "object"]), COMPOSITE),
        )
    elif element.part == "number":
        expr = case(
            (kind == "number", cast(text_value, Numeric())),
            (kind == "boolean", case((text_value == "true", 1), else_=0)),
        )
        return compiler.process(expr, **kw)
    else:
        expr = case((kind == "string", text_value))
        return f'({compiler.process(expr, **kw)}) COLLATE "C"'
    return compiler.process(expr, **kw)


@compiles(_AttributeKey)
def _key_other(element: _AttributeKey, compiler: SQLCompiler, **kw: Any) -> str:
    raise InputError(f"attributes are not supported on {compiler.dialect.name}")
