"""`campaign demo` prints how to open the console: the command to serve, the URL, and each
demo user's login with a generated first password, which signs in over HTTP."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select
from starlette.testclient import TestClient

from cli import cli
from engine.app import build_app
from engine.db.models import ConsoleUser
from engine.settings import Settings
from engine.webhooks.app import build_asgi_app

USER_LINE = re.compile(
    r"^\s+(\S+)\s+(agent|supervisor|manager|coordinator), first password: (\S+)$", re.M
)
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _sign_in(client: TestClient, login: str, password: str) -> str:
    page = client.get("/login")
    token = CSRF.search(page.text)
    assert token is not None
    done = client.post(
        "/login", data={"csrf_token": token.group(1), "login": login, "password": password}
    )
    return str(done.url.path)


def test_demo_prints_console_users_whose_passwords_sign_in(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--participants", "200", "--folder", str(folder)])
    assert result.exit_code == 0, result.output
    assert f"cd {folder} && campaign serve" in result.output
    assert "http://127.0.0.1:8000/login" in result.output
    users = {login: (role, password) for login, role, password in USER_LINE.findall(result.output)}
    assert {"ana.lee", "ben.okafor", "chen.wei"} <= {
        login for login, (role, _) in users.items() if role == "agent"
    }
    assert {"supervisor", "manager", "coordinator"} <= {role for role, _ in users.values()}
    # Generated, not fixed: every password differs, and none is stored as typed.
    passwords = [p for _, p in users.values()]
    assert len(set(passwords)) == len(passwords) and all(len(p) >= 12 for p in passwords)

    app = build_app(Settings(database_url=f"sqlite:///{folder / 'campaign.db'}"))
    try:
        with app.sessions() as s:
            hashes = set(s.scalars(select(ConsoleUser.password_hash)))
        assert hashes and not hashes & set(passwords)
        assert all(h.startswith("$argon2") for h in hashes)
        client = TestClient(build_asgi_app(app), follow_redirects=True)
        assert users["ana.lee"][0] == "agent"
        assert _sign_in(client, "ana.lee", users["ana.lee"][1]) == "/agent"
        floor = TestClient(build_asgi_app(app), follow_redirects=True)
        supervisor = next(login for login, (r, _) in users.items() if r == "supervisor")
        assert _sign_in(floor, supervisor, users[supervisor][1]) == "/floor"
        assert _sign_in(TestClient(build_asgi_app(app)), "ana.lee", "not the password") == "/login"
    finally:
        app.close()
