"""docs/campaign-format.md cannot drift from the schema: every field of every model is named
in it, and its example YAML blocks load."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from engine.definitions.loader import parse_definition
from engine.definitions.schema import CampaignDefinition

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "campaign-format.md"
DOC = DOC_PATH.read_text(encoding="utf-8")


def _models(tp: Any, seen: set[type[BaseModel]]) -> Iterator[type[BaseModel]]:
    """Every pydantic model reachable from a type (through lists, unions, Annotated)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if tp in seen:
            return
        seen.add(tp)
        yield tp
        for info in tp.model_fields.values():
            yield from _models(info.annotation, seen)
        return
    for arg in typing.get_args(tp):
        yield from _models(arg, seen)


MODELS = list(_models(CampaignDefinition, set()))
FIELDS = sorted(
    {
        (model.__name__, info.alias or name)
        for model in MODELS
        for name, info in model.model_fields.items()
    }
)


def test_the_walk_reaches_the_nested_models() -> None:
    names = {model.__name__ for model in MODELS}
    assert {"Step", "Variant", "Goal", "Schedule", "ReentryAfter", "TimeWindow"} <= names
    assert {"FieldCondition", "EventCondition", "AllOf", "Not", "Comparison"} <= names


@pytest.mark.parametrize(("model", "field"), FIELDS, ids=[f"{m}.{f}" for m, f in FIELDS])
def test_every_field_is_documented(model: str, field: str) -> None:
    assert f"`{field}`" in DOC, f"{model}.{field} is not in {DOC_PATH.name}"


def test_every_model_has_a_docstring() -> None:
    schema_models = [model for model in MODELS if model.__module__.endswith(".schema")]
    assert schema_models
    for model in schema_models:
        assert model.__doc__ and model.__doc__.strip(), model.__name__


def _campaign_blocks() -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC, flags=re.S)
    return [block for block in blocks if block.startswith("name:")]


def test_the_doc_has_a_complete_example() -> None:
    assert _campaign_blocks()


@pytest.mark.parametrize("block", _campaign_blocks())
def test_the_doc_examples_load(block: str) -> None:
    loaded = parse_definition(block, DOC_PATH)
    definition = loaded.definition
    # The complete example shows every top-level field, so none is left undocumented by example.
    missing = set(CampaignDefinition.model_fields) - set(definition.model_fields_set)
    assert not missing, f"the example does not show {sorted(missing)}"
