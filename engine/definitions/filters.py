"""The audience filter language of campaign files (pure data; compiled to SQL by
engine/audience.py and evaluated in Python by the same module for `explain`).

A filter is one of:

- ``{all: [filter, ...]}``, ``{any: [filter, ...]}``, ``{not: filter}``
- a field condition: ``{field: NAME, <op>: VALUE}`` with exactly one operator
- an event condition: ``{event: TYPE | [TYPES], within_last: DUR?, count: {<cmp>: N}?,
  points: {<cmp>: N}?, amount: {<cmp>: N}?}``; with no ``count``/``points``/``amount`` it means
  "at least one such event" (in the window, or ever). ``{not: {event: redemption,
  within_last: 90d}}`` reads "no redemption in the last 90 days".

Field operators: eq, ne, in, not_in, gt, gte, lt, lte, is_null (true/false), and for dates
older_than (DUR: more than DUR ago), within_last (DUR: in the last DUR), within_next (DUR:
from now until DUR ahead), before / after (an absolute ISO date or datetime).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from engine.definitions.durations import Duration
from engine.filter_shape import (
    ALL,
    ANY,
    ATTRIBUTE_PREFIX,
    EVENT,
    FIELD,
    NOT,
    PARTICIPANT_FIELDS,
)
from engine.filter_shape import walk as walk  # the walk of any tree of that shape

_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_ -]{0,63}$")

Scalar = str | int | float | Decimal | bool | date | datetime
COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte")
FIELD_OPERATORS = (
    *COMPARISONS,
    "in",
    "not_in",
    "is_null",
    "older_than",
    "within_last",
    "within_next",
    "before",
    "after",
)
_DATE_ONLY_OPERATORS = {"older_than", "within_last", "within_next", "before", "after"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Comparison(_Strict):
    """One comparison of a number: ``{gte: 1}``, ``{eq: 0}``..."""

    eq: Decimal | None = None
    ne: Decimal | None = None
    gt: Decimal | None = None
    gte: Decimal | None = None
    lt: Decimal | None = None
    lte: Decimal | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Comparison:
        set_ops = [op for op in COMPARISONS if getattr(self, op) is not None]
        if len(set_ops) != 1:
            raise ValueError("give exactly one of eq, ne, gt, gte, lt, lte")
        return self

    @property
    def operator(self) -> str:
        return next(op for op in COMPARISONS if getattr(self, op) is not None)

    @property
    def value(self) -> Decimal:
        result: Decimal = getattr(self, self.operator)
        return result


class FieldCondition(_Strict):
    kind: ClassVar[str] = FIELD
    field: str
    eq: Scalar | None = None
    ne: Scalar | None = None
    gt: Scalar | None = None
    gte: Scalar | None = None
    lt: Scalar | None = None
    lte: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    not_in: list[Scalar] | None = None
    is_null: bool | None = None
    older_than: Duration | None = None
    within_last: Duration | None = None
    within_next: Duration | None = None
    before: date | datetime | None = None
    after: date | datetime | None = None

    @model_validator(mode="after")
    def _check(self) -> FieldCondition:
        if self.field.startswith(ATTRIBUTE_PREFIX):
            # The name ends up inside a JSON path on SQLite: quotes or backslashes would break it.
            if not _ATTRIBUTE_NAME.match(self.field[len(ATTRIBUTE_PREFIX) :]):
                raise ValueError(
                    f"attribute name in {self.field!r}: use letters, digits, '_', '-' or spaces"
                )
        elif self.field not in PARTICIPANT_FIELDS:
            known = ", ".join(sorted(PARTICIPANT_FIELDS))
            raise ValueError(f"unknown field {self.field!r}; use one of {known} or attributes.NAME")
        set_ops = [op for op in FIELD_OPERATORS if self.operand_of(op) is not None]
        if len(set_ops) != 1:
            raise ValueError(
                f"field condition on {self.field!r} needs exactly one operator of "
                f"{', '.join(FIELD_OPERATORS)}"
            )
        kind = PARTICIPANT_FIELDS.get(self.field)
        if set_ops[0] in _DATE_ONLY_OPERATORS and kind not in ("date", "datetime"):
            raise ValueError(f"{set_ops[0]} applies to date fields; {self.field!r} is not one")
        return self

    def operand_of(self, op: str) -> Any:
        return getattr(self, "in_" if op == "in" else op)

    @property
    def operator(self) -> str:
        return next(op for op in FIELD_OPERATORS if self.operand_of(op) is not None)

    @property
    def operand(self) -> Any:
        return self.operand_of(self.operator)


class EventCondition(_Strict):
    kind: ClassVar[str] = EVENT
    event: str | list[str]
    within_last: Duration | None = None
    count: Comparison | None = None
    points: Comparison | None = None
    amount: Comparison | None = None

    @property
    def event_types(self) -> list[str]:
        return [self.event] if isinstance(self.event, str) else list(self.event)

    @property
    def window(self) -> timedelta | None:
        return self.within_last


class AllOf(_Strict):
    kind: ClassVar[str] = ALL
    all: list[Filter] = Field(min_length=1)


class AnyOf(_Strict):
    kind: ClassVar[str] = ANY
    any: list[Filter] = Field(min_length=1)


class Not(_Strict):
    kind: ClassVar[str] = NOT
    not_: Filter = Field(alias="not")


def _filter_kind(value: Any) -> str | None:
    """Pick the filter model by its key, so errors speak of one model, not five."""
    keys = value.keys() if isinstance(value, dict) else vars(value).keys()
    for kind, key in (("all", "all"), ("any", "any"), ("not", "not"), ("not", "not_")):
        if key in keys:
            return kind
    if "event" in keys:
        return "event"
    if "field" in keys:
        return "field"
    return None


Filter = Annotated[
    Union[  # noqa: UP007
        Annotated[AllOf, Tag("all")],
        Annotated[AnyOf, Tag("any")],
        Annotated[Not, Tag("not")],
        Annotated[EventCondition, Tag("event")],
        Annotated[FieldCondition, Tag("field")],
    ],
    Discriminator(
        _filter_kind,
        custom_error_type="filter_kind",
        custom_error_message="a filter needs one of the keys all, any, not, event or field",
    ),
]

for _model in (AllOf, AnyOf, Not):
    _model.model_rebuild()


# The operators a NULL never satisfies (SQL's three-valued logic and explain's alike).
_NEEDS_A_VALUE = {op for op in FIELD_OPERATORS if op not in ("ne", "not_in", "is_null")}


def fields_required(node: Filter | None) -> frozenset[str]:
    """The participant fields every member the filter admits has a value for: a blank one
    cannot print in a template of the campaign (``validate``'s edge check)."""
    if isinstance(node, FieldCondition):
        op = node.operator
        if op in _NEEDS_A_VALUE or (op == "is_null" and node.is_null is False):
            return frozenset({node.field})
        return frozenset()
    if isinstance(node, AllOf):
        return frozenset().union(*(fields_required(child) for child in node.all))
    if isinstance(node, AnyOf):
        return frozenset.intersection(*(fields_required(child) for child in node.any))
    return frozenset()  # not, events, no audience: nothing certain
