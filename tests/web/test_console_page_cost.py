"""What the agent's pages cost: the call script is rendered by a renderer kept for the
process that still picks up a script edited on disk, or a language's file added, as the page
did when it built a renderer per sheet."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from console_helpers import Browser, add_console_user, make_world

from engine.app import App
from engine.calls.scripts import script_renderer
from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """This repository's templates, copied: the test edits the call script."""
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    return Settings(
        database_url=database_url,
        outbox_dir=tmp_path / "outbox",
        templates_dir=templates,
        campaigns_dir=ROOT / "campaigns",
    )


def _rewrite(path: Path, text: str) -> None:
    """Write ``path`` with a modification time that differs from before whatever the file
    system's time resolution."""
    before = path.stat().st_mtime if path.exists() else 0.0
    path.write_text(text, encoding="utf-8")
    later = max(before + 10, path.stat().st_mtime)
    os.utime(path, (later, later))


def test_an_edited_or_added_call_script_shows_on_the_next_page(
    app: App, settings: Settings
) -> None:
    world = make_world(app)
    world.agent("ana")
    world.task(world.member(first_name="Ada", last_name="Lovelace", locale="fr-CA"))
    add_console_user(app, "ana")
    browser = Browser(app)
    browser.sign_in("ana")
    page = browser.post("/agent/next", {})
    assert "RENEWAL CALL: renew-calls" in page.text  # fr-CA: the default file
    calls = Path(settings.templates_dir) / "calls"
    _rewrite(calls / "renewal_due.txt.j2", "EDITED SCRIPT for {{ participant.first_name }}\n")
    page = browser.get("/agent")
    assert "EDITED SCRIPT for Ada" in page.text
    assert "RENEWAL CALL" not in page.text
    _rewrite(
        calls / "renewal_due.fr.txt.j2", "SCRIPT EN FRANCAIS pour {{ participant.first_name }}\n"
    )
    page = browser.get("/agent")
    assert "SCRIPT EN FRANCAIS pour Ada" in page.text


def test_the_script_renderer_is_kept_and_compiles_a_file_again_only_when_it_changed(
    tmp_path: Path,
) -> None:
    (tmp_path / "calls").mkdir()
    script = tmp_path / "calls" / "hello.txt.j2"
    _rewrite(script, "Hello {{ name }}\n")
    renderer = script_renderer(str(tmp_path), "1 Main St", "https://example.com")
    assert script_renderer(str(tmp_path), "1 Main St", "https://example.com") is renderer
    first = renderer.resolve("call", "hello", None, "txt")
    assert renderer.resolve("call", "hello", None, "txt") is first  # compiled once
    _rewrite(script, "Bye {{ name }}\n")
    again = renderer.resolve("call", "hello", None, "txt")
    assert again is not first
    assert renderer.render_call_script("hello", {"name": "Ada"}, None).strip() == "Bye Ada"
