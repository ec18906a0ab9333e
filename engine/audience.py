"""Audiences: a campaign's Filter (engine/definitions/filters.py) compiled into ONE SQL SELECT,
and the same semantics evaluated in Python for `explain`.

The SQL is what selects an audience (no per-participant Python loop); the Python evaluator
exists so that a coordinator can see, node by node, why one member is in or out. The two agree
by construction and by a property test (tests/campaigns/test_audience_property.py). The SQL
that differs per dialect (JSON attributes, code-point order) is in engine/audience_dialects.py.

Semantics (the same in SQL on SQLite and PostgreSQL, and in Python):

- Every condition is TRUE or FALSE, never "unknown". A comparison (``eq``, ``gt``, ``gte``,
  ``lt``, ``lte``, ``in``, ``older_than``, ``within_last``, ``within_next``, ``before``,
  ``after``) on a missing value (NULL field, absent attribute, JSON null) is FALSE.
- ``ne`` is exactly ``not eq`` and ``not_in`` exactly ``not in``: a member with no tier is
  "not gold". ``{not: F}`` is the plain negation of F, so ``{not: {field: points_balance, gt:
  100}}`` includes members whose balance is missing, while ``{field: points_balance, lte:
  100}`` does not.
- Relative dates are computed from ``at`` in Python and bound as parameters. For datetime
  fields: ``older_than D`` is ``value < at - D``; ``within_last D`` is ``at - D <= value <=
  at``; ``within_next D`` is ``at <= value <= at + D``. For date fields the same with the
  calendar dates of those instants in the program's time zone (``tz``).
  ``before X`` / ``after X`` are strict. A date operand on a datetime field means midnight
  of that date in ``tz``; a naive datetime operand is in ``tz``.
- Text compares case-sensitively in code-point order on both databases (PostgreSQL uses
  COLLATE "C" for ordering operators, which is what SQLite and Python do).
- Numbers on participant columns compare exactly. A number operand on a text field is
  compared as its text; a text operand on a number field must be a number.
- ``attributes.NAME`` values are JSON. The operand's type decides the comparison:
  a number compares numerically with JSON numbers AND with strings that are plain decimals
  (``-?[0-9]+(.[0-9]+)?``, as CSV imports store them), anything else is missing;
  ``true``/``false`` match JSON booleans and the strings ``"true"``/``"false"`` (``eq``,
  ``ne``, ``in``, ``not_in`` only); a string, date or datetime operand (dates as ISO text)
  matches JSON strings only, in code-point order. ``is_null: true`` matches an absent key
  and JSON null. On SQLite numeric attributes compare as 64-bit floats (about 15
  significant digits); on PostgreSQL as exact NUMERIC.
- Event conditions look at the participant's activity_events of the given type(s) with
  ``occurred_at <= at`` and, with ``within_last D``, ``occurred_at >= at - D``. Without
  ``count``/``points``/``amount`` the condition means "at least one such event". ``count`` is
  the number of such events; ``points`` and ``amount`` are their sums, where missing values
  count as 0 (so no events at all give count 0, points 0, amount 0). Several aggregates in one
  condition must all hold.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Numeric,
    Select,
    and_,
    bindparam,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
)

from engine.audience_dialects import PLAIN_DECIMAL_PATTERN, CodePointOrder, attribute
from engine.db.tables.members import activity_events, participants
from engine.definitions.duration_text import format_duration
from engine.errors import InputError
from engine.filter_shape import (
    ALL,
    ANY,
    ATTRIBUTE_PREFIX,
    EVENT,
    FIELD,
    NOT,
    PARTICIPANT_FIELDS,
)
from engine.filter_shape import walk as walk_filter

if TYPE_CHECKING:
    # Read through their shape (engine/filter_shape.py): a run's claim form is
    # compiled too, and compiling imports no pydantic (#18).
    from engine.definitions.filters import Comparison, EventCondition, FieldCondition, Filter

FieldKind = Literal["text", "number", "datetime", "date"]
_PLAIN_DECIMAL = re.compile(PLAIN_DECIMAL_PATTERN)
_ATTRIBUTE_NAME = re.compile(r'^[^"\\]+$')


# --------------------------------------------------------------------------- plain data


@dataclass(frozen=True)
class Event:
    """One activity event as the Python evaluator sees it."""

    type: str
    occurred_at: datetime
    points: int | None = None
    amount: Decimal | None = None


@dataclass(frozen=True)
class ExplainNode:
    """One node of an audience explanation: the condition as text, whether it passed, the
    participant's actual value (field value, or event count/sums), and the child nodes."""

    condition: str
    passed: bool
    actual: Any = None
    children: list[ExplainNode] = field(default_factory=list)


def participant_values(participant: Any) -> dict[str, Any]:
    """The values the evaluator needs, from a loaded Participant row."""
    values = {name: getattr(participant, name) for name in PARTICIPANT_FIELDS}
    values["attributes"] = dict(participant.attributes or {})
    return values


def referenced_fields(filter_: Filter) -> list[str]:
    """Field names a filter reads, in order of first appearance (for plan samples)."""
    seen: dict[str, None] = {}
    for node in walk_filter(filter_):
        if node.kind == FIELD:
            seen.setdefault(node.field, None)
    return list(seen)


def referenced_event_types(filter_: Filter) -> set[str]:
    return {t for node in walk_filter(filter_) if node.kind == EVENT for t in node.event_types}


# --------------------------------------------------------------------------- operands


def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


def _local_date(instant: datetime, tz: str) -> date:
    return instant.astimezone(_zone(tz)).date()


def _field_kind(name: str) -> FieldKind | None:
    """The kind of a participant column; None for attributes.X."""
    return PARTICIPANT_FIELDS.get(name)


def _attribute_key(name: str) -> str:
    key = name[len(ATTRIBUTE_PREFIX) :]
    if not _ATTRIBUTE_NAME.match(key):
        raise InputError(f"attribute name {key!r} may not contain '\"' or '\\'")
    return key


def _parse_temporal(value: str, name: str) -> date | datetime:
    try:
        if "T" in value or " " in value.strip():
            return datetime.fromisoformat(value)
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InputError(f"{name}: {value!r} is not an ISO 8601 date or datetime") from exc


def _coerce(kind: FieldKind, value: Any, name: str, tz: str) -> Any:
    """The operand converted to the field's kind, as SQL and Python both compare it."""
    if kind == "text":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, datetime | date):
            return value.isoformat()
        return str(value)
    if kind == "number":
        if isinstance(value, bool | date):
            raise InputError(f"{name} is a number; {value!r} is not one")
        try:
            return Decimal(str(value))
        except InvalidOperation as exc:
            raise InputError(f"{name} is a number; {value!r} is not one") from exc
    if isinstance(value, str):
        value = _parse_temporal(value, name)
    if isinstance(value, bool) or not isinstance(value, date):
        raise InputError(f"{name} is a {kind}; {value!r} is not one")
    if kind == "date":
        if isinstance(value, datetime):
            return _local_date(_aware(value, tz), tz)
        return value
    # datetime field
    if isinstance(value, datetime):
        return _aware(value, tz)
    return datetime.combine(value, time(0), tzinfo=_zone(tz)).astimezone(UTC)


def _aware(value: datetime, tz: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=_zone(tz))
    return value.astimezone(UTC)


@dataclass(frozen=True)
class _Range:
    """A relative or absolute date condition as bounds: low/high, inclusive or strict."""

    low: Any = None
    low_inclusive: bool = True
    high: Any = None
    high_inclusive: bool = True

    def holds(self, value: Any) -> bool:
        if value is None:
            return False
        if self.low is not None and (
            value < self.low or (value == self.low and not self.low_inclusive)
        ):
            return False
        return not (
            self.high is not None
            and (value > self.high or (value == self.high and not self.high_inclusive))
        )


def _date_range(cond: FieldCondition, kind: FieldKind, at: datetime | BoundAt, tz: str) -> _Range:
    op, operand = cond.operator, cond.operand
    if op in ("before", "after"):
        bound = _coerce(kind, operand, cond.field, tz)
        return (
            _Range(high=bound, high_inclusive=False)
            if op == "before"
            else _Range(low=bound, low_inclusive=False)
        )

    def point(offset: timedelta) -> Any:
        if kind == "datetime":
            return _shifted(at, offset)
        return _shifted(at, offset, lambda moved: _local_date(moved, tz))

    if op == "older_than":
        return _Range(high=point(-operand), high_inclusive=False)
    if op == "within_last":
        return _Range(low=point(-operand), high=point(_NO_SHIFT))
    if op == "within_next":
        return _Range(low=point(_NO_SHIFT), high=point(operand))
    raise AssertionError(op)


_NO_SHIFT = timedelta(0)


def _shifted(
    at: datetime | BoundAt, offset: timedelta, convert: Callable[[datetime], Any] | None = None
) -> Any:
    """``at + offset`` (``convert``-ed, e.g. to the local date): the value, or the parameter
    that gives it when ``at`` is a :class:`BoundAt`."""

    def value(instant: datetime) -> Any:
        moved = instant + offset
        return moved if convert is None else convert(moved)

    return at.bind(value) if isinstance(at, BoundAt) else value(at)


class BoundAt:
    """The instant of an audience condition as bound parameters (#19): a condition built on
    it holds no time, so it is built once and run at any instant with :meth:`params` of that
    instant. Each value derived from the instant (``at - D``, the calendar date of ``at + D``
    in the program's zone...) is a parameter named ``prefix`` + a number, worked out from the
    instant as :func:`audience_condition` works it out with a datetime."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._values: list[tuple[str, Callable[[datetime], Any]]] = []

    def bind(self, value: Callable[[datetime], Any]) -> BindParameter[Any]:
        """A parameter whose value is ``value`` of the (UTC) instant."""
        name = f"{self.prefix}{len(self._values)}"
        self._values.append((name, value))
        return bindparam(name)

    def params(self, at: datetime) -> dict[str, Any]:
        if at.tzinfo is None:
            raise ValueError("at must be an aware datetime")
        instant = at.astimezone(UTC)
        return {name: value(instant) for name, value in self._values}


# --------------------------------------------------------------------------- SQL: compile


def compile_audience(
    filter_: Filter, *, program_id: int, at: datetime, tz: str = "UTC"
) -> Select[int]:
    """SELECT participants.id of the program's members matching the filter at ``at``.

    Needs no database: compile it against any dialect (``campaign validate`` does).
    ``tz`` is the program's zone, used for the calendar dates of date fields.
    """
    return select(participants.c.id).where(
        participants.c.program_id == program_id, audience_condition(filter_, at=at, tz=tz)
    )


def audience_condition(
    filter_: Filter, *, at: datetime | BoundAt, tz: str = "UTC"
) -> ColumnElement[bool]:
    """The filter as a boolean SQL expression over the ``participants`` table (correlates with
    it, so it can be used in any query whose FROM has participants). ``at``: the instant, or
    a :class:`BoundAt` whose parameters give it when the expression runs."""
    if isinstance(at, BoundAt):
        return _sql(filter_, at, tz)
    if at.tzinfo is None:
        raise ValueError("at must be an aware datetime")
    return _sql(filter_, at.astimezone(UTC), tz)


# The nodes are read by their ``kind`` (engine/filter_shape.py): Any, as either
# kind of tree is compiled.
def _sql(filter_: Any, at: datetime | BoundAt, tz: str) -> ColumnElement[bool]:
    if filter_.kind == ALL:
        return and_(*(_sql(child, at, tz) for child in filter_.all))
    if filter_.kind == ANY:
        return or_(*(_sql(child, at, tz) for child in filter_.any))
    if filter_.kind == NOT:
        return not_(_sql(filter_.not_, at, tz))
    if filter_.kind == EVENT:
        return _event_sql(filter_, at)
    return _field_sql(filter_, at, tz)


def _number(value: Decimal) -> ColumnElement[Any]:
    """A numeric parameter both drivers bind (pysqlite has no Decimal: SQLAlchemy's Numeric
    converts it to float there)."""
    return literal(value, Numeric(28, 10))


def _compare_sql(expr: Any, op: str, value: Any) -> ColumnElement[bool]:
    if isinstance(value, Decimal):
        value = _number(value)
    result: ColumnElement[bool] = {
        "eq": lambda: expr == value,
        "gt": lambda: expr > value,
        "gte": lambda: expr >= value,
        "lt": lambda: expr < value,
        "lte": lambda: expr <= value,
        "ne": lambda: expr != value,
    }[op]()
    return result


def _definite(expr: Any, positive: ColumnElement[bool]) -> ColumnElement[bool]:
    """``positive`` where the value is present, FALSE where it is missing (never NULL)."""
    return and_(expr.is_not(None), positive)


def _field_sql(cond: FieldCondition, at: datetime | BoundAt, tz: str) -> ColumnElement[bool]:
    op = cond.operator
    if cond.field.startswith(ATTRIBUTE_PREFIX):
        return _attribute_sql(cond, _attribute_key(cond.field))
    kind = _field_kind(cond.field)
    assert kind is not None
    column = participants.c[cond.field]
    if op == "is_null":
        return column.is_(None) if cond.is_null else column.is_not(None)
    if op in ("ne", "not_in"):
        positive_op = "eq" if op == "ne" else "in"
        return not_(_field_sql_positive(column, kind, positive_op, cond, at, tz))
    return _field_sql_positive(column, kind, op, cond, at, tz)


def _field_sql_positive(
    column: Any, kind: FieldKind, op: str, cond: FieldCondition, at: datetime | BoundAt, tz: str
) -> ColumnElement[bool]:
    def operand(value: Any) -> Any:
        coerced = _coerce(kind, value, cond.field, tz)
        return _number(coerced) if kind == "number" else coerced

    if op == "in":
        values = [operand(v) for v in cond.operand]
        if not values:
            return false()
        return _definite(column, column.in_(values))
    if op in ("eq", "gt", "gte", "lt", "lte"):
        ordered = CodePointOrder(column) if kind == "text" and op != "eq" else column
        return _definite(column, _compare_sql(ordered, op, operand(cond.operand)))
    bounds = _date_range(cond, kind, at, tz)
    parts = [column.is_not(None)]
    if bounds.low is not None:
        parts.append(column >= bounds.low if bounds.low_inclusive else column > bounds.low)
    if bounds.high is not None:
        parts.append(column <= bounds.high if bounds.high_inclusive else column < bounds.high)
    return and_(*parts)


def _attribute_operand_kind(value: Any) -> Literal["number", "bool", "text"]:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float | Decimal):
        return "number"
    return "text"


def _attribute_text(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def _attribute_sql(cond: FieldCondition, key: str) -> ColumnElement[bool]:
    op = cond.operator
    if op == "is_null":
        kind = attribute("type", key)
        missing = or_(kind.is_(None), kind == "null")
        return missing if cond.is_null else not_(missing)
    if op in ("ne", "not_in"):
        positive = "eq" if op == "ne" else "in"
        return not_(_attribute_positive_sql(positive, cond.operand, key, cond.field))
    return _attribute_positive_sql(op, cond.operand, key, cond.field)


def _attribute_positive_sql(op: str, operand: Any, key: str, name: str) -> ColumnElement[bool]:
    if op == "in":
        if not operand:
            return false()
        return or_(*(_attribute_positive_sql("eq", value, key, name) for value in operand))
    operand_kind = _attribute_operand_kind(operand)
    if operand_kind == "bool":
        if op != "eq":
            raise InputError(f"{name}: {op} does not apply to true/false; use eq, ne, in, not_in")
        value = attribute("bool", key)
        return _definite(value, value == (1 if operand else 0))
    if operand_kind == "number":
        number = attribute("number", key)
        return _definite(number, _compare_sql(number, op, Decimal(str(operand))))
    text_value = attribute("text", key)
    return _definite(
        text_value, _compare_sql(CodePointOrder(text_value), op, _attribute_text(operand))
    )


def _event_sql(cond: EventCondition, at: datetime | BoundAt) -> ColumnElement[bool]:
    event = activity_events.alias()
    where = [
        event.c.participant_id == participants.c.id,
        event.c.type.in_(cond.event_types),
        event.c.occurred_at <= _shifted(at, _NO_SHIFT),
    ]
    if cond.within_last is not None:
        where.append(event.c.occurred_at >= _shifted(at, -cond.within_last))
    aggregates: list[tuple[Any, Comparison]] = []
    if cond.count is not None:
        aggregates.append((func.count(), cond.count))
    if cond.points is not None:
        aggregates.append((func.coalesce(func.sum(event.c.points), 0), cond.points))
    if cond.amount is not None:
        # Amounts have 2 decimals; rounding the sum keeps SQLite's float sums exact enough
        # to compare equal to the Decimal sum Python computes.
        aggregates.append((func.round(func.coalesce(func.sum(event.c.amount), 0), 2), cond.amount))
    if not aggregates:
        return exists(select(1).select_from(event).where(*where))
    parts = []
    for aggregate, comparison in aggregates:
        value = select(aggregate).select_from(event).where(*where).scalar_subquery()
        parts.append(_compare_sql(value, comparison.operator, comparison.value))
    return and_(*parts)


# --------------------------------------------------------------------------- Python evaluator


def evaluate(
    filter_: Filter,
    participant_values: Mapping[str, Any],
    events: Sequence[Event],
    at: datetime,
    *,
    tz: str = "UTC",
) -> bool:
    """The filter in Python, with exactly the SQL semantics (see the module docstring)."""
    return explain(filter_, participant_values, events, at, tz=tz).passed


def explain(
    filter_: Filter,
    participant_values: Mapping[str, Any],
    events: Sequence[Event],
    at: datetime,
    *,
    tz: str = "UTC",
) -> ExplainNode:
    """A tree of (condition text, passed, actual value) for every node of the filter."""
    if at.tzinfo is None:
        raise ValueError("at must be an aware datetime")
    return _explain(filter_, participant_values, events, at.astimezone(UTC), tz)


def _explain(
    filter_: Any, values: Mapping[str, Any], events: Sequence[Event], at: datetime, tz: str
) -> ExplainNode:
    if filter_.kind == ALL:
        children = [_explain(child, values, events, at, tz) for child in filter_.all]
        return ExplainNode("all of", all(c.passed for c in children), None, children)
    if filter_.kind == ANY:
        children = [_explain(child, values, events, at, tz) for child in filter_.any]
        return ExplainNode("any of", any(c.passed for c in children), None, children)
    if filter_.kind == NOT:
        child = _explain(filter_.not_, values, events, at, tz)
        return ExplainNode("not", not child.passed, None, [child])
    if filter_.kind == EVENT:
        return _explain_event(filter_, events, at)
    return _explain_field(filter_, values, at, tz)


def _compare_py(value: Any, op: str, operand: Any) -> bool:
    if op == "eq":
        return bool(value == operand)
    if op == "ne":
        return bool(value != operand)
    if op == "gt":
        return bool(value > operand)
    if op == "gte":
        return bool(value >= operand)
    if op == "lt":
        return bool(value < operand)
    if op == "lte":
        return bool(value <= operand)
    raise AssertionError(op)


def _explain_field(
    cond: FieldCondition, values: Mapping[str, Any], at: datetime, tz: str
) -> ExplainNode:
    text = describe_condition(cond, at=at, tz=tz)
    if cond.field.startswith(ATTRIBUTE_PREFIX):
        key = _attribute_key(cond.field)
        attributes = values.get("attributes") or {}
        actual = attributes.get(key)
        return ExplainNode(text, _attribute_py(cond, key in attributes, actual), actual)
    kind = _field_kind(cond.field)
    assert kind is not None
    actual = values.get(cond.field)
    return ExplainNode(text, _field_py(cond, kind, actual, at, tz), actual)


def _field_py(cond: FieldCondition, kind: FieldKind, value: Any, at: datetime, tz: str) -> bool:
    op = cond.operator
    if op == "is_null":
        return (value is None) == bool(cond.is_null)
    if op in ("ne", "not_in"):
        return not _field_py_positive("eq" if op == "ne" else "in", cond, kind, value, at, tz)
    return _field_py_positive(op, cond, kind, value, at, tz)


def _normalise_value(kind: FieldKind, value: Any) -> Any:
    if value is None:
        return None
    if kind == "number":
        return Decimal(str(value))
    if kind == "datetime":
        return value.astimezone(UTC)
    return value


def _field_py_positive(
    op: str, cond: FieldCondition, kind: FieldKind, value: Any, at: datetime, tz: str
) -> bool:
    value = _normalise_value(kind, value)
    if value is None:
        # Still validate the operand, so Python fails exactly where SQL compilation would.
        if op in ("eq", "gt", "gte", "lt", "lte"):
            _coerce(kind, cond.operand, cond.field, tz)
        return False
    if op == "in":
        return any(value == _coerce(kind, v, cond.field, tz) for v in cond.operand)
    if op in ("eq", "gt", "gte", "lt", "lte"):
        return _compare_py(value, op, _coerce(kind, cond.operand, cond.field, tz))
    return _date_range(cond, kind, at, tz).holds(value)


def _attr_number_py(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    if isinstance(value, str) and _PLAIN_DECIMAL.match(value):
        return Decimal(value)
    return None


def _attr_bool_py(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def _attribute_py(cond: FieldCondition, present: bool, value: Any) -> bool:
    op = cond.operator
    if op == "is_null":
        missing = not present or value is None
        return missing == bool(cond.is_null)
    if op in ("ne", "not_in"):
        return not _attribute_py_positive(
            "eq" if op == "ne" else "in", cond.operand, value, cond.field
        )
    return _attribute_py_positive(op, cond.operand, value, cond.field)


def _attribute_py_positive(op: str, operand: Any, value: Any, name: str) -> bool:
    if op == "in":
        return any(_attribute_py_positive("eq", v, value, name) for v in operand)
    operand_kind = _attribute_operand_kind(operand)
    if operand_kind == "bool":
        if op != "eq":
            raise InputError(f"{name}: {op} does not apply to true/false; use eq, ne, in, not_in")
        flag = _attr_bool_py(value)
        return flag is not None and flag == operand
    if operand_kind == "number":
        number = _attr_number_py(value)
        return number is not None and _compare_py(number, op, Decimal(str(operand)))
    if not isinstance(value, str):
        return False
    return _compare_py(value, op, _attribute_text(operand))


def _matching_events(cond: EventCondition, events: Sequence[Event], at: datetime) -> list[Event]:
    types = set(cond.event_types)
    low = at - cond.within_last if cond.within_last is not None else None
    return [
        e
        for e in events
        if e.type in types
        and e.occurred_at.astimezone(UTC) <= at
        and (low is None or e.occurred_at.astimezone(UTC) >= low)
    ]


def _explain_event(cond: EventCondition, events: Sequence[Event], at: datetime) -> ExplainNode:
    matching = _matching_events(cond, events, at)
    actual: dict[str, Any] = {"count": len(matching)}
    checks: list[bool] = []
    if cond.count is not None:
        checks.append(_compare_py(Decimal(len(matching)), cond.count.operator, cond.count.value))
    if cond.points is not None:
        points = sum((e.points or 0 for e in matching), 0)
        actual["points"] = points
        checks.append(_compare_py(Decimal(points), cond.points.operator, cond.points.value))
    if cond.amount is not None:
        amount = sum((Decimal(e.amount or 0) for e in matching), Decimal(0))
        actual["amount"] = amount
        checks.append(_compare_py(amount, cond.amount.operator, cond.amount.value))
    if matching:
        actual["last"] = max(e.occurred_at for e in matching)
    passed = all(checks) if checks else bool(matching)
    return ExplainNode(describe_condition(cond, at=at), passed, actual)


# --------------------------------------------------------------------------- text


_OP_TEXT = {
    "eq": "=",
    "ne": "≠",
    "gt": ">",
    "gte": "≥",
    "lt": "<",
    "lte": "≤",
    "in": "in",
    "not_in": "not in",
    "before": "before",
    "after": "after",
}


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return format_duration(value)
    return str(value)


def describe_condition(cond: Any, *, at: datetime | None = None, tz: str = "UTC") -> str:
    """A one-line human reading of a leaf condition (a field or event condition), with
    relative dates resolved at ``at``."""
    if cond.kind == EVENT:
        types = " or ".join(cond.event_types)
        text = f"event {types}"
        text += f" in the last {format_duration(cond.within_last)}" if cond.within_last else " ever"
        aggs = [
            f"{name} {_OP_TEXT[c.operator]} {c.value}"
            for name, c in (("count", cond.count), ("points", cond.points), ("amount", cond.amount))
            if c is not None
        ]
        return text + (": " + ", ".join(aggs) if aggs else ": at least one")
    op, operand = cond.operator, cond.operand
    if op == "is_null":
        return f"{cond.field} is {'missing' if operand else 'present'}"
    if op in ("older_than", "within_last", "within_next"):
        phrase = {
            "older_than": "more than {} ago",
            "within_last": "in the last {}",
            "within_next": "in the next {}",
        }[op].format(format_duration(operand))
        text = f"{cond.field} {phrase}"
        kind = _field_kind(cond.field)
        if at is not None and kind is not None:
            bounds = _date_range(cond, kind, at, tz)
            shown = [b for b in (bounds.low, bounds.high) if b is not None]
            text += " (" + " .. ".join(_show(b) for b in shown) + ")"
        return text
    return f"{cond.field} {_OP_TEXT[op]} {_show(operand)}"


# Bucket SQL twin lives in planning (holdout); kept out of here on purpose: the audience is
# who matches, not who is contacted.
__all__ = [
    "BoundAt",
    "Event",
    "ExplainNode",
    "audience_condition",
    "compile_audience",
    "describe_condition",
    "evaluate",
    "explain",
    "participant_values",
    "referenced_event_types",
    "referenced_fields",
]
