"""A run's stored definition read back on hot paths (engine/definitions/stored.py): the same
definition the loader validated at launch, and the loader's file:line errors when stored text
no longer validates."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest
import yaml

from engine.definitions.loader import parse_definition
from engine.definitions.stored import StoredLoader, stored_definition
from engine.errors import DefinitionError

from .helpers import VALID

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGNS = sorted((ROOT / "campaigns").glob("*.yaml"))


@pytest.mark.parametrize("path", CAMPAIGNS, ids=lambda path: path.stem)
def test_a_stored_definition_is_the_one_the_loader_validates(path: Path) -> None:
    source = path.read_text()
    assert (
        stored_definition(source, f"run 1: {path.name}")
        == parse_definition(source, path).definition
    )


def test_times_are_times_not_base_60_numbers() -> None:
    # YAML 1.1 reads an unquoted 10:00 as 600: the stored reader resolves as the loader does.
    source = VALID + "call_window: {start: 10:00, end: 17:30, days: [mon, tue]}\n"
    definition = stored_definition(source, "run 2: sample.yaml")
    assert definition.call_window is not None
    assert (definition.call_window.start, definition.call_window.end) == (time(10), time(17, 30))
    assert definition == parse_definition(source, "sample.yaml").definition
    # Read by the fast path, not by the loader it falls back to on a failure.
    assert yaml.load("start: 10:00\nmax: 1_000", Loader=StoredLoader) == {
        "start": "10:00",
        "max": 1000,
    }


def test_stored_text_that_no_longer_validates_is_reported_at_its_line() -> None:
    source = VALID + "call_window: {start: '18:00', end: '09:00'}\n"
    with pytest.raises(DefinitionError) as caught:
        stored_definition(source, "run 3: sample.yaml")
    assert str(caught.value).startswith(f"run 3: sample.yaml:{VALID.count(chr(10)) + 1} ")
