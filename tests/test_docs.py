"""Docs that cannot drift: every CLI command has help and appears in the README."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from cli import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _subcommand(group: click.Group, name: str) -> click.Command:
    # Asked the way click asks: the root group loads a command's module on demand.
    command = group.get_command(click.Context(group), name)
    assert command is not None, name
    return command


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name in group.list_commands(click.Context(group)):
        command = _subcommand(group, name)
        path = (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, path)
        else:
            yield path


ALL_COMMANDS = list(_commands(cli))


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=" ".join)
def test_command_has_help(path: tuple[str, ...]) -> None:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = _subcommand(command, name)
    assert command.help and command.help.strip(), f"`campaign {' '.join(path)}` has no help"


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=" ".join)
def test_command_is_in_the_readme(path: tuple[str, ...]) -> None:
    pattern = r"campaign " + r"\s+".join(re.escape(part) for part in path) + r"\b"
    assert re.search(pattern, README), f"`campaign {' '.join(path)}` is missing from README.md"


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in README and "make test" in ci


def test_every_project_file_the_docs_name_exists() -> None:
    """A path such as tests/init/test_init.py or engine/tick.py named in README.md, docs/ or
    bench/README.md is a file of the project (a moved file must update what points to it)."""
    root = Path(__file__).resolve().parents[1]
    docs = [root / "README.md", root / "bench" / "README.md", *sorted((root / "docs").glob("*.md"))]
    named_path = re.compile(r"\b(?:tests|engine|bench)/[\w/]+\.py\b")
    missing = [
        f"{doc.relative_to(root)}: {named}"
        for doc in docs
        for named in sorted(set(named_path.findall(doc.read_text(encoding="utf-8"))))
        if not (root / named).is_file()
    ]
    assert missing == []
