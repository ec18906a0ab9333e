"""docs/calls.md cannot drift from the standard disposition set."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.calls.dispositions import STANDARD

DOC = (Path(__file__).resolve().parents[2] / "docs" / "calls.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("disposition", STANDARD, ids=lambda d: d.code)
def test_every_standard_disposition_is_documented(disposition) -> None:  # type: ignore[no-untyped-def]
    row = next(line for line in DOC.splitlines() if line.startswith(f"| `{disposition.code}` |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == ("yes" if disposition.human_contact else "no")
    assert cells[2] == ("yes" if disposition.final else "no")
    recycle = disposition.describe()["recycle_after"] or "-"
    assert cells[3] == recycle
    assert cells[4] == disposition.effect
    for spec in disposition.fields:
        assert f"`{spec.name}`" in cells[5]
        for choice in spec.choices:
            assert choice in cells[5]
