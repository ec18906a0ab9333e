"""`campaign users ...` end to end: a first password printed once that signs in, a password
from stdin, one-line errors, disable, reset-password, set-role and the audit."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner
from console_helpers import Browser, make_world

from cli import cli
from engine.app import App


def run(app: App, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["--database-url", app.settings.database_url, *args], input=stdin
    )
    return result.exit_code, result.output


def test_users_life_from_the_cli(app: App) -> None:
    make_world(app).agent("ana")
    code, out = run(app, "users", "add", "ana", "--role", "agent")
    assert code == 0, out
    first = re.search(r"shown once; they sign in with it\): (\S+)", out)
    assert first, out
    assert Browser(app).sign_in("ana", first.group(1)).url.path == "/agent"

    code, out = run(
        app,
        "users",
        "add",
        "sam",
        "--role",
        "supervisor",
        "--password-stdin",
        stdin="supervisor password\n",
    )
    assert code == 0 and "shown once" not in out
    assert Browser(app).sign_in("sam", "supervisor password").url.path == "/floor"

    code, out = run(app, "users", "list", "--json")
    listed = {u["login"]: u for u in json.loads(out)}
    assert listed["ana"]["agent"] == "ana" and listed["sam"]["role"] == "supervisor"

    code, out = run(app, "users", "reset-password", "ana")
    new = re.search(r"shown once; they sign in with it\): (\S+)", out)
    assert code == 0 and new and new.group(1) != first.group(1)
    assert Browser(app).sign_in("ana", first.group(1)).status_code == 401
    assert Browser(app).sign_in("ana", new.group(1)).url.path == "/agent"

    assert run(app, "users", "set-role", "sam", "manager")[0] == 0
    assert run(app, "users", "disable", "ana")[0] == 0
    assert Browser(app).sign_in("ana", new.group(1)).status_code == 401

    code, out = run(app, "users", "audit", "--json")
    events = [(e["event"], e["login"]) for e in json.loads(out)]
    assert ("role_changed", "sam") in events and ("user_disabled", "ana") in events
    assert ("sign_in_failed", "ana") in events and ("password_reset", "ana") in events


def test_user_errors_are_one_line(app: App) -> None:
    make_world(app)
    code, out = run(app, "users", "add", "nobody", "--role", "agent")
    assert code != 0 and "no agent 'nobody'" in out and "Traceback" not in out
    code, out = run(
        app, "users", "add", "sam", "--role", "supervisor", "--password-stdin", stdin="short\n"
    )
    assert code != 0 and "at least 12 characters" in out
    assert run(app, "users", "add", "sam", "--role", "supervisor")[0] == 0
    code, out = run(app, "users", "add", "sam", "--role", "manager")
    assert code != 0 and "already exists" in out
    code, out = run(app, "users", "disable", "ghost")
    assert code != 0 and "no console user 'ghost'" in out
