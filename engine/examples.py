"""The example campaigns and templates that ship with the engine.

They live in the repository's ``campaigns/`` and ``templates/`` (the shape of a coordinator's
working folder) and reach the package through the symlinks ``engine/examples/campaigns`` and
``engine/examples/templates``; a built wheel holds copies (pyproject's package-data). So there is
one copy to edit, and ``campaign demo`` / ``campaign init`` find them from any folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from engine.errors import ConfigError

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
# The program every example campaign names; `campaign init` replaces it with the user's key.
EXAMPLE_PROGRAM_KEY = "demo"
_PROGRAM_LINE = re.compile(rf"^program: {EXAMPLE_PROGRAM_KEY}$", re.MULTILINE)


def example_campaigns_dir() -> Path:
    return _existing(EXAMPLES_DIR / "campaigns")


def example_templates_dir() -> Path:
    return _existing(EXAMPLES_DIR / "templates")


def _existing(folder: Path) -> Path:
    if not folder.is_dir():
        raise ConfigError(
            f"the engine's example files are missing ({folder}): reinstall campaign-engine"
        )
    return folder


def example_files(program_key: str = EXAMPLE_PROGRAM_KEY) -> Iterator[tuple[Path, bytes]]:
    """(path relative to a working folder, content) of every example file, the campaigns
    naming ``program_key``. Templates are copied byte for byte."""
    for source in sorted(example_campaigns_dir().glob("*.yaml")):
        text = source.read_text(encoding="utf-8")
        if program_key != EXAMPLE_PROGRAM_KEY:
            text, replaced = _PROGRAM_LINE.subn(f"program: {program_key}", text)
            if replaced != 1:  # an example edited so that its program line moved: say so
                raise ConfigError(f"{source}: no single `program: demo` line to adapt")
        yield Path("campaigns") / source.name, text.encode("utf-8")
    templates = example_templates_dir()
    for source in sorted(path for path in templates.rglob("*.j2") if path.is_file()):
        yield Path("templates") / source.relative_to(templates), source.read_bytes()
