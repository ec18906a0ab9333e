"""Program dispositions from a YAML file: extending the set, and errors at file:line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from calls_helpers import TEST_NOW

from engine.calls.config import load_dispositions, parse_dispositions
from engine.calls.dispositions import DispositionError, validate_entry
from engine.errors import DefinitionError, DefinitionErrors

GOOD = """\
dispositions:
  - code: RENEWAL_QUOTED
    label: Quoted a renewal price
    human_contact: true
    final: false
    recycle_after: 2d
    effect: follow_up
    fields:
      - {name: price, kind: number}
      - {name: plan, kind: choice, choices: [Basic, Plus]}
    note: "Quoted {{ fields.price }} for the {{ fields.plan }} plan."
  - code: NO_ANSWER
    label: No answer (program rule)
    human_contact: false
    final: false
    recycle_after: 2h
    effect: recycle
programs:
  demo:
    - code: CARD_EXPIRED
      label: Card on file expired
      human_contact: true
      final: true
      fields:
        - {name: card_last4}
"""


def test_a_program_file_extends_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "dispositions.yaml"
    path.write_text(GOOD)
    everyone = load_dispositions(path)
    demo = load_dispositions(path, "demo")
    assert "CARD_EXPIRED" in demo.by_code and "CARD_EXPIRED" not in everyone.by_code
    assert everyone.get("NO_ANSWER").recycle_after == timedelta(hours=2)
    assert everyone.get("CONVERTED").effect == "conversion"  # the standard set is kept
    quoted = everyone.get("renewal_quoted")
    entry = validate_entry(
        quoted, {"price": "49", "plan": "plus"}, verified=True, notes=None, at=TEST_NOW
    )
    assert entry.record.endswith("Quoted 49 for the plus plan.")
    with pytest.raises(DispositionError, match="RENEWAL_QUOTED requires field plan"):
        validate_entry(quoted, {"price": "49"}, verified=True, notes=None, at=TEST_NOW)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "dispositions:\n  - code: X1\n    label: x\n"
            "    human_contact: maybe\n    final: true\n",
            4,
            "human_contact",
        ),
        (
            "dispositions:\n  - code: lower\n    label: x\n"
            "    human_contact: true\n    final: true\n",
            2,
            "code",
        ),
        (
            "dispositions:\n  - code: DO_NOT_CALL\n    label: x\n    human_contact: true\n"
            "    final: true\n    effect: none\n",
            6,
            "its effect cannot change",
        ),
        (
            "dispositions:\n  - code: CB\n    label: x\n    human_contact: true\n    final: true\n"
            "    effect: callback\n",
            2,
            "callback_at",
        ),
        (
            "dispositions:\n  - code: QQ\n    label: x\n    human_contact: true\n    final: true\n"
            "    fields:\n      - {name: size, kind: choice}\n",
            7,
            "without choices",
        ),
        (
            "dispositions:\n  - code: N1\n    label: x\n    human_contact: true\n    final: true\n"
            "    note: '{{ fields.a '\n",
            6,
            "does not parse",
        ),
        ("dispositions: [\n", 2, "YAML syntax error"),
    ],
)
def test_errors_point_at_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises((DefinitionError, DefinitionErrors)) as caught:
        parse_dispositions(text, "dispositions.yaml")
    errors = caught.value.errors if isinstance(caught.value, DefinitionErrors) else [caught.value]
    assert any(e.line == line and message in str(e) for e in errors), [str(e) for e in errors]
    assert str(errors[0]).startswith("dispositions.yaml:")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="dispositions file not found"):
        load_dispositions(tmp_path / "nope.yaml")
