"""The audience compiler's dialect-specific SQL: JSON attribute access and code-point text order.

Attribute access differs per dialect (SQLite's json_type/json_extract, PostgreSQL's jsonb
operators); these constructs compile to the right SQL for each, so that
engine.audience.compile_audience() returns one dialect-neutral Select. The semantics they
implement are engine/audience.py's ("attributes.NAME values are JSON...").
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Numeric,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    not_,
    type_coerce,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from engine.db.tables.members import participants
from engine.errors import InputError

# A number stored as text counts as a number when it is a plain decimal (as CSV imports store).
PLAIN_DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"


class _AttrExpr(ColumnElement[Any]):
    inherit_cache = True
    _traverse_internals = [  # noqa: RUF012
        ("column", InternalTraversal.dp_clauseelement),
        ("attr_key", InternalTraversal.dp_string),
        ("kind", InternalTraversal.dp_string),
    ]

    def __init__(self, column: ColumnElement[Any], key: str, kind: str, type_: Any) -> None:
        self.column = column
        self.attr_key = key
        self.kind = kind  # "type" | "text" | "number" | "bool"
        self.type = type_


def attribute(kind: str, key: str) -> ColumnElement[Any]:
    types = {"type": String(), "text": String(), "number": Numeric(), "bool": Integer()}
    return _AttrExpr(participants.c.attributes, key, kind, types[kind])


@compiles(_AttrExpr, "sqlite")
def _attr_sqlite(element: _AttrExpr, compiler: SQLCompiler, **kw: Any) -> str:
    path = literal(f'$."{element.attr_key}"')
    raw_type = func.json_type(element.column, path)
    value = func.json_extract(element.column, path)
    kind = case(
        (raw_type.in_(["integer", "real"]), "number"),
        (raw_type == "text", "string"),
        (raw_type.in_(["true", "false"]), "boolean"),
        else_=raw_type,
    )
    text_value = type_coerce(value, String())
    # '-?[0-9]+(.[0-9]+)?' without regular expressions: digits and at most one inner dot.
    unsigned = case(
        (func.substr(text_value, 1, 1) == "-", func.substr(text_value, 2)), else_=text_value
    )
    plain_decimal = and_(
        unsigned.op("GLOB", is_comparison=True)("[0-9]*"),
        not_(unsigned.op("GLOB", is_comparison=True)("*[^0-9.]*")),
        not_(unsigned.op("GLOB", is_comparison=True)("*.*.*")),
        not_(unsigned.op("GLOB", is_comparison=True)("*.")),
    )
    expr: ColumnElement[Any]
    if element.kind == "type":
        expr = kind
    elif element.kind == "text":
        expr = case((raw_type == "text", text_value))
    elif element.kind == "number":
        expr = case(
            (raw_type.in_(["integer", "real"]), cast(value, Float())),
            (and_(raw_type == "text", plain_decimal), cast(value, Float())),
        )
    else:
        expr = case(
            (raw_type == "true", 1),
            (raw_type == "false", 0),
            (and_(raw_type == "text", text_value == "true"), 1),
            (and_(raw_type == "text", text_value == "false"), 0),
        )
    return compiler.process(expr, **kw)


@compiles(_AttrExpr, "postgresql")
def _attr_postgresql(element: _AttrExpr, compiler: SQLCompiler, **kw: Any) -> str:
    column = element.column
    node = column.op("->")(literal(element.attr_key, String()))
    text_value = type_coerce(column.op("->>")(literal(element.attr_key, String())), String())
    kind = func.jsonb_typeof(node)
    plain_decimal = text_value.op("~", is_comparison=True)(PLAIN_DECIMAL_PATTERN)
    expr: ColumnElement[Any]
    if element.kind == "type":
        expr = kind
    elif element.kind == "text":
        expr = case((kind == "string", text_value))
    elif element.kind == "number":
        expr = case(
            (kind == "number", cast(text_value, Numeric())),
            (
                and_(kind == "string", plain_decimal),
                cast(text_value, Numeric()),
            ),
        )
    else:
        expr = case(
            (kind == "boolean", case((text_value == "true", 1), else_=0)),
            (and_(kind == "string", text_value == "true"), 1),
            (and_(kind == "string", text_value == "false"), 0),
        )
    return compiler.process(expr, **kw)


@compiles(_AttrExpr)
def _attr_other(element: _AttrExpr, compiler: SQLCompiler, **kw: Any) -> str:
    raise InputError(f"attributes are not supported on {compiler.dialect.name}")


class CodePointOrder(ColumnElement[str]):
    """Text in code-point order: COLLATE "C" on PostgreSQL; SQLite's BINARY already is."""

    inherit_cache = True
    _traverse_internals = [("inner", InternalTraversal.dp_clauseelement)]  # noqa: RUF012

    def __init__(self, inner: ColumnElement[Any]) -> None:
        self.inner = inner
        self.type = String()


@compiles(CodePointOrder)
def _code_point_default(element: CodePointOrder, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.inner, **kw)


@compiles(CodePointOrder, "postgresql")
def _code_point_postgresql(element: CodePointOrder, compiler: SQLCompiler, **kw: Any) -> str:
    return f'({compiler.process(element.inner, **kw)}) COLLATE "C"'


__all__ = ["PLAIN_DECIMAL_PATTERN", "CodePointOrder", "attribute"]
