"""The console's writes begin as SQLite's writer (engine/web/app.py Console.write): a sign-in
reads the audit (the lockout) and the user, checks the password, then writes the audit; a
dispatcher's commit in between is waited for, not "database is locked" (a 500). SQLite only:
the failure is SQLite's (tests/test_cli_writing.py says why)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_helpers import Browser, add_console_user, audit_count
from sqlite_writers import commit_between_read_and_write

from engine.app import App


@pytest.fixture
def database_url(tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    path = tmp_path / "campaign.db"
    shutil.copyfile(sqlite_template, path)
    yield f"sqlite:///{path}"


def test_a_sign_in_waits_for_a_commit_between_its_reads_and_its_write(app: App) -> None:
    add_console_user(app, "sam", "supervisor")
    browser = Browser(app)
    browser.get("/login")
    path = Path(app.engine.url.database or "")

    with commit_between_read_and_write(path, reads="console_audit") as other:
        response = browser.post(
            "/login", {"login": "sam", "password": "correct horse battery staple"}
        )

    assert response.status_code == 200, response.text
    assert response.url.path == "/floor"
    assert audit_count(app, "sign_in", "sam") == 1
    assert other.thread.ident is not None and not other.errors  # the read was met
    assert not other.got_in  # it waited for the sign-in's commit
    assert other.committed.is_set() and other.left_its_mark()
