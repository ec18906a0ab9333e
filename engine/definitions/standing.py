"""Standing conditions: the part of a campaign's audience that must still hold at each send.

A campaign's ``standing`` list names participant fields (default ``[status]``). The standing
filter is made of:

- the audience's top-level conditions (the items of its ``all``, or the audience itself when
  it is not an ``all``) that read only standing fields and no events, and
- ``not`` each exclusion that reads only standing fields and no events.

So ``audience: {all: [{field: status, eq: active}, {field: points_balance, gte: 500}]}``
re-checks ``status = active`` before each step, send and call claim, but not the balance
(spending points is what the campaign asks for). Event conditions are never standing: they
are about a window of time that has moved on since launch. ``standing: []`` turns it off.
"""

from __future__ import annotations

from engine.definitions.filters import AllOf, EventCondition, FieldCondition, Filter, Not
from engine.definitions.filters import walk as walk_filter
from engine.definitions.schema import CampaignDefinition


def _only_standing(filter_: Filter, fields: frozenset[str]) -> bool:
    nodes = list(walk_filter(filter_))
    if any(isinstance(node, EventCondition) for node in nodes):
        return False
    named = {node.field for node in nodes if isinstance(node, FieldCondition)}
    return bool(named) and named <= fields


def standing_filter(definition: CampaignDefinition) -> Filter | None:
    """The filter a member must still match (see the module docstring), or None."""
    fields = frozenset(definition.standing)
    if not fields:
        return None
    audience = definition.audience
    top = audience.all if isinstance(audience, AllOf) else [audience]
    parts: list[Filter] = [f for f in top if _only_standing(f, fields)]
    parts += [Not(**{"not": f}) for f in definition.exclusions if _only_standing(f, fields)]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else AllOf(all=parts)


def standing_fields(filter_: Filter) -> list[str]:
    """The fields a standing filter reads, for the reason a member leaves (e.g. ``status``)."""
    seen: dict[str, None] = {}
    for node in walk_filter(filter_):
        if isinstance(node, FieldCondition):
            seen.setdefault(node.field, None)
    return list(seen)


__all__ = ["standing_fields", "standing_filter"]
