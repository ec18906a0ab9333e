from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from engine.definitions.filters import FieldCondition, Filter

FILTER: TypeAdapter[Filter] = TypeAdapter(Filter)


@pytest.mark.parametrize("name", ["home_store", "Member Type", "join-channel", "x1"])
def test_attribute_names_that_are_accepted(name: str) -> None:
    condition = FILTER.validate_python({"field": f"attributes.{name}", "eq": "a"})
    assert isinstance(condition, FieldCondition) and condition.field == f"attributes.{name}"


@pytest.mark.parametrize("name", ["", 'a"b', "a\\b", "x.y", "$.x", " lead"])
def test_attribute_names_that_would_break_a_json_path_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="attribute name"):
        FILTER.validate_python({"field": f"attributes.{name}", "eq": "a"})
