"""Attempts to get round the console's access rules over HTTP: no page without sign-in,
CSRF, lockout after failed sign-ins, an agent acting on another agent's claim or a team's task
they may not be served, a manager logging a call, a disabled user's live session, an expired
session. Each checks what the database holds afterwards."""

from __future__ import annotations

from datetime import timedelta

from console_helpers import (
    Browser,
    add_console_user,
    audit_count,
    error_text,
    log_entries,
    make_world,
    task_row,
    unit,
)

from engine.app import App
from engine.clock import FrozenClock
from engine.web import audit
from engine.web.users import disable_user, set_role


def _world(app: App) -> tuple[int, int]:
    world = make_world(app)
    world.agent("ana")
    world.agent("ben")
    world.agent("zed", teams=("retention",))
    first = world.task(world.member(points_balance=900))
    second = world.task(world.member(points_balance=100))
    for login in ("ana", "ben", "zed"):
        add_console_user(app, login)
    add_console_user(app, "mia", role="manager")
    return first, second


def test_no_page_without_sign_in(app: App) -> None:
    first, _ = _world(app)
    browser = Browser(app)
    for path in ("/agent", "/floor", "/"):
        assert browser.get(path).url.path == "/login"
    browser.get("/login")  # a real CSRF token, but nobody signed in
    assert browser.post("/agent/next", {}).status_code == 401
    assert (
        browser.post("/agent/log", {"task_id": str(first), "disposition": "NO_ANSWER"}).status_code
        == 401
    )
    assert task_row(app, first).status == "open" and log_entries(app) == []


def test_csrf_token_is_required_on_every_form(app: App) -> None:
    first, _ = _world(app)
    browser = Browser(app)
    browser.sign_in("ana")
    assert browser.post("/agent/next", {}, csrf="forged").status_code == 403
    assert browser.post("/agent/next", {}, csrf="").status_code == 403
    assert task_row(app, first).status == "open"
    # Signing in needs the login page's token too (no login CSRF from another site).
    other = Browser(app)
    refused = other.post("/login", {"login": "ana", "password": "correct horse battery staple"})
    assert refused.status_code == 403


def test_every_agent_form_that_writes_needs_the_csrf_token(app: App) -> None:
    """The writing forms read the user in their writing session; the CSRF check still comes
    before any write."""
    first, _ = _world(app)
    browser = Browser(app)
    browser.sign_in("ana")
    browser.post("/agent/next", {})
    assert task_row(app, first).claimed_by == "ana"
    task = str(first)
    forms = {
        "/agent/verify": {"task_id": task},
        "/agent/log": {
            "task_id": task,
            "disposition": "NOT_INTERESTED",
            "NOT_INTERESTED.reason": "csrf test",
            "verified": "yes",
        },
        "/agent/release": {"task_id": task},
        "/agent/pause": {"code": "break"},
        "/agent/resume": {},
    }
    for path, form in forms.items():
        for token in ("forged", ""):
            assert browser.post(path, form, csrf=token).status_code == 403, path
    row = task_row(app, first)
    assert row.claimed_by == "ana" and row.status == "claimed" and row.verified_at is None
    assert log_entries(app) == []
    # The same form with the page's token is logged: the refusals above were the token's.
    assert browser.post("/agent/log", forms["/agent/log"]).status_code == 200
    assert [e.task_id for e in log_entries(app)] == [first]


def test_lockout_after_failed_sign_ins(app: App, clock: FrozenClock) -> None:
    _world(app)
    browser = Browser(app)
    for _ in range(audit.MAX_FAILED_PER_LOGIN):
        page = browser.sign_in("ana", "wrong password, again")
        assert page.status_code == 401 and error_text(page.text) == "wrong login or password"
    locked = browser.sign_in("ana")  # the right password, refused while locked out
    assert locked.status_code == 401 and "too many failed sign-ins" in (
        error_text(locked.text) or ""
    )
    assert browser.get("/agent").url.path == "/login"
    assert audit_count(app, audit.SIGN_IN_FAILED, "ana") == audit.MAX_FAILED_PER_LOGIN + 1
    assert audit_count(app, audit.SIGN_IN, "ana") == 0
    clock.advance(audit.WINDOW + timedelta(seconds=1))
    assert browser.sign_in("ana").url.path == "/agent"
    assert audit_count(app, audit.SIGN_IN, "ana") == 1


def test_an_agent_cannot_touch_another_agents_claim(app: App) -> None:
    first, second = _world(app)
    ana, ben = Browser(app), Browser(app)
    ana.sign_in("ana")
    ana.post("/agent/next", {})
    assert task_row(app, first).claimed_by == "ana"
    ben.sign_in("ben")
    for path, data in (
        (
            "/agent/log",
            {
                "task_id": str(first),
                "disposition": "NOT_INTERESTED",
                "NOT_INTERESTED.reason": "x",
                "verified": "yes",
            },
        ),
        ("/agent/release", {"task_id": str(first)}),
    ):
        refused = ben.post(path, data)
        assert refused.status_code == 403 and "not yours" in (error_text(refused.text) or "")
    assert log_entries(app) == []
    assert task_row(app, first).claimed_by == "ana"
    # ben's own page never shows ana's member; his next call is the other task.
    page = ben.post("/agent/next", {})
    assert f'name="task_id" value="{second}"' in page.text
    assert f'name="task_id" value="{first}"' not in page.text


def test_an_agent_is_served_only_tasks_they_may_be_served(app: App) -> None:
    first, second = _world(app)
    zed = Browser(app)
    zed.sign_in("zed")  # team retention; both tasks are the renewals team's
    page = zed.post("/agent/next", {})
    assert 'id="nothing"' in page.text
    assert task_row(app, first).status == "open" and task_row(app, second).status == "open"


def test_a_manager_cannot_log_calls_as_someone_else(app: App) -> None:
    first, _ = _world(app)
    ana = Browser(app)
    ana.sign_in("ana")
    ana.post("/agent/next", {})
    mia = Browser(app)
    assert mia.sign_in("mia").url.path == "/floor"
    for path in ("/agent/log", "/agent/next", "/agent/release"):
        refused = mia.post(
            path, {"task_id": str(first), "agent": "ana", "disposition": "NO_ANSWER"}
        )
        assert refused.status_code == 403
    assert mia.get("/agent").status_code == 403
    assert log_entries(app) == []
    assert task_row(app, first).claimed_by == "ana"


def test_disable_and_role_change_end_live_sessions(app: App) -> None:
    _world(app)
    ana, ben = Browser(app), Browser(app)
    ana.sign_in("ana")
    ben.sign_in("ben")
    with unit(app) as s:
        disable_user(s, "ana", at=app.clock.now())
        set_role(s, "ben", "supervisor", at=app.clock.now())
    assert ana.get("/agent").url.path == "/login"
    assert ana.sign_in("ana").status_code == 401
    assert ben.get("/agent").url.path == "/login"
    assert ben.sign_in("ben").url.path == "/floor"
    assert audit_count(app, audit.ROLE_CHANGED, "ben") == 1


def test_a_session_expires(app: App, clock: FrozenClock) -> None:
    _world(app)
    ana = Browser(app)
    ana.sign_in("ana")
    clock.advance(timedelta(hours=11))
    assert ana.get("/agent").url.path == "/agent"
    clock.advance(timedelta(hours=2))
    assert ana.get("/agent").url.path == "/login"
