"""Builders for the console tests: the call tests' world (program, run, members, tasks,
agents), console users, and a browser-like HTTP client that signs in and posts forms with the
page's CSRF token."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "calls"))

from calls_helpers import TEST_NOW, World, make_world, task_row
from sqlalchemy import func, select
from starlette.testclient import TestClient

from engine.app import App
from engine.db.models import CallerLogEntry, ConsoleAuditEvent
from engine.testing.fakes import unit
from engine.web.users import add_user
from engine.webhooks.app import build_asgi_app

__all__ = ["TEST_NOW", "Browser", "World", "log_entries", "make_world", "task_row", "unit"]

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def add_console_user(app: App, login: str, role: str = "agent") -> None:
    with unit(app) as s:
        add_user(s, login, role=role, at=TEST_NOW, password=PASSWORD)


def log_entries(app: App, agent: str | None = None) -> list[CallerLogEntry]:
    with app.sessions() as s:
        query = select(CallerLogEntry).order_by(CallerLogEntry.seq)
        if agent:
            query = query.where(CallerLogEntry.agent == agent)
        return list(s.scalars(query))


def audit_count(app: App, event: str, login: str) -> int:
    with app.sessions() as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(ConsoleAuditEvent)
                .where(ConsoleAuditEvent.event == event, ConsoleAuditEvent.login == login)
            )
            or 0
        )


class Browser:
    """One person's browser: its own cookie jar, the CSRF token of the last page it read."""

    def __init__(self, app: App) -> None:
        self.client = TestClient(build_asgi_app(app), follow_redirects=True)
        self.csrf = ""

    def get(self, path: str) -> Any:
        response = self.client.get(path)
        self._remember(response.text)
        return response

    def post(self, path: str, data: dict[str, str], *, csrf: str | None = None) -> Any:
        form = {"csrf_token": self.csrf if csrf is None else csrf, **data}
        response = self.client.post(path, data=form)
        self._remember(response.text)
        return response

    def _remember(self, text: str) -> None:
        found = CSRF.search(text)
        if found:
            self.csrf = found.group(1)

    def sign_in(self, login: str, password: str = PASSWORD) -> Any:
        self.get("/login")
        return self.post("/login", {"login": login, "password": password})


def error_text(html: str) -> str | None:
    found = re.search(r'id="error">([^<]*)<', html)
    if not found:
        return None
    import html as html_lib

    return html_lib.unescape(found.group(1))
