"""The shape of an audience filter tree, without its validation: the participant fields a
filter may name, the kind of each node, and a walk over any tree of that shape.

Two kinds of tree have it: the definitions' pydantic models (engine/definitions/filters.py,
what a campaign file is validated into) and a run's stored claim form
(engine/calls/claim_form.py, what a claim reads without pydantic, #18). The audience compiler
(engine/audience.py) reads nodes through this shape only, so it compiles either.

A node's ``kind`` is one of ``all`` (children in ``all``), ``any`` (``any``), ``not``
(``not_``), ``event`` and ``field`` (``field``, ``operator``, ``operand``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

ALL, ANY, NOT, EVENT, FIELD = "all", "any", "not", "event", "field"

# Participant fields an audience may filter on, with their kind.
PARTICIPANT_FIELDS: dict[str, Literal["text", "number", "datetime", "date"]] = {
    "external_id": "text",
    "status": "text",
    "tier": "text",
    "locale": "text",
    "timezone": "text",
    "account_manager": "text",
    "email": "text",
    "phone": "text",
    "first_name": "text",
    "last_name": "text",
    "points_balance": "number",
    "points_expiring": "number",
    "points_expire_at": "date",
    "renewal_date": "date",
    "last_activity_at": "datetime",
    "enrolled_at": "datetime",
}
ATTRIBUTE_PREFIX = "attributes."


def walk(node: Any) -> Iterator[Any]:
    """Every node of a filter tree, the root first (depth-first)."""
    yield node
    if node.kind == ALL:
        for child in node.all:
            yield from walk(child)
    elif node.kind == ANY:
        for child in node.any:
            yield from walk(child)
    elif node.kind == NOT:
        yield from walk(node.not_)


__all__ = ["ALL", "ANY", "ATTRIBUTE_PREFIX", "EVENT", "FIELD", "NOT", "PARTICIPANT_FIELDS", "walk"]
