"""Inputs that cannot exhaust the machine: a campaign file is refused with one line naming the
file and line before anything expands or recurses through it (issue #17)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from definitions.helpers import VALID, make_tree

from cli import cli
from engine.definitions.loader import MAX_DEPTH, parse_definition
from engine.errors import DefinitionError

# 480 bytes that expand to 9^9 list items (PyYAML keeps the aliases shared; every recursive walk
# of the plain data does not).
BILLION_LAUGHS = """\
name: sample
program: demo
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def nested_not(levels: int) -> str:
    audience = "{field: status, eq: active}"
    for _ in range(levels):
        audience = "{not: " + audience + "}"
    return VALID.replace(
        "audience:\n  all:\n    - {field: status, eq: active}\n",
        f"audience:\n  all:\n    - {audience}\n",
    )


def test_alias_bomb_is_refused_at_its_line() -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(BILLION_LAUGHS, "campaigns/sample.yaml")
    assert caught.value.path == "campaigns/sample.yaml"
    assert "too large once its aliases are expanded" in str(caught.value)
    assert caught.value.line is not None and 3 <= caught.value.line <= 11


@pytest.mark.parametrize("levels", [250, 5_000])
def test_deep_nesting_is_one_error_not_a_recursion_error(levels: int) -> None:
    with pytest.raises(DefinitionError, match=f"nested too deeply.*at most {MAX_DEPTH} levels"):
        parse_definition(nested_not(levels), "campaigns/sample.yaml")


def test_a_few_nested_filters_still_load() -> None:
    loaded = parse_definition(nested_not(10), "campaigns/sample.yaml")
    assert loaded.name == "sample"


def test_validate_reports_both_attacks_in_one_line_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tree(tmp_path)
    (tmp_path / "campaigns" / "bomb.yaml").write_text(
        BILLION_LAUGHS.replace("name: sample", "name: bomb")
    )
    (tmp_path / "campaigns" / "deep.yaml").write_text(
        nested_not(300).replace("name: sample", "name: deep")
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CAMPAIGN_CAMPAIGNS_DIR", "campaigns")
    monkeypatch.setenv("CAMPAIGN_TEMPLATES_DIR", "templates")
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("campaigns/bomb.yaml:") and "aliases" in lines[0]
    assert lines[1].startswith("campaigns/deep.yaml:") and "nested too deeply" in lines[1]
    assert lines[2] == "campaigns/sample.yaml: ok"
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- templates

BLOW_UPS = {
    "repeat": "Hi {{ 'a' * 10**8 }}\n{{ unsubscribe_url }}\n{{ postal_address }}\n",
    "loop": (
        "{% for i in range(20000) %}{% for j in range(20000) %}{% endfor %}{% endfor %}"
        "Hi\n{{ unsubscribe_url }}\n{{ postal_address }}\n"
    ),
    "output": (
        "{% for i in range(100000) %}{{ 'xxxxxxxxxxxxxxxxxxxx' }}{% endfor %}"
        "\n{{ unsubscribe_url }}\n{{ postal_address }}\n"
    ),
}


@pytest.mark.parametrize("kind", sorted(BLOW_UPS))
def test_validate_refuses_a_template_that_would_exhaust_the_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    make_tree(tmp_path)
    (tmp_path / "templates" / "email" / "hello.txt.j2").write_text(BLOW_UPS[kind])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CAMPAIGN_CAMPAIGNS_DIR", "campaigns")
    monkeypatch.setenv("CAMPAIGN_TEMPLATES_DIR", "templates")
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1, result.output
    assert "hello.txt.j2" in result.output and "not allowed in a template" in result.output
    assert "Traceback" not in result.output
