"""The agent's call screen over HTTP: sign in, next call (the engine's claim), the call
sheet, the disposition form refused exactly as `calls log` refuses, callbacks in the agent's
zone, escalation, release. Both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from console_helpers import (
    TEST_NOW,
    Browser,
    add_console_user,
    error_text,
    log_entries,
    make_world,
    task_row,
)

from cli import cli
from engine.app import App


def _world(app: App, *, agent_zone: str = "America/New_York") -> tuple[int, int]:
    world = make_world(app)
    world.agent("ana", timezone=agent_zone)
    first = world.task(world.member(first_name="Ada", last_name="Lovelace", points_balance=900))
    second = world.task(world.member(first_name="Bo", last_name="Chen", points_balance=100))
    add_console_user(app, "ana")
    return first, second


def test_agent_claims_sees_the_sheet_and_logs(app: App) -> None:
    first, _ = _world(app)
    browser = Browser(app)
    page = browser.sign_in("ana")
    assert page.url.path == "/agent" and 'id="next"' in page.text
    sheet = browser.post("/agent/next", {})
    assert "Ada Lovelace" in sheet.text  # the priority order: most points first
    assert 'id="script"' in sheet.text and "Renew this month and keep your tier" in sheet.text
    assert "Your member number?" in sheet.text and 'id="countdown"' in sheet.text
    assert task_row(app, first).claimed_by == "ana"
    done = browser.post("/agent/log", {"task_id": str(first), "disposition": "NO_ANSWER"})
    assert done.status_code == 200 and 'id="logged"' in done.text
    entries = log_entries(app)
    assert [(e.task_id, e.agent, e.disposition) for e in entries] == [(first, "ana", "NO_ANSWER")]
    assert task_row(app, first).status == "open"  # recycled by the engine's rule


def test_session_cookie_is_signed_httponly_samesite(app: App) -> None:
    _world(app)
    browser = Browser(app)
    browser.get("/login")
    response = browser.client.post(
        "/login",
        data={
            "csrf_token": browser.csrf,
            "login": "ana",
            "password": "correct horse battery staple",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "max-age=43200" in cookie


def test_refused_log_has_the_cli_message_keeps_the_form_and_writes_nothing(app: App) -> None:
    first, _ = _world(app)
    browser = Browser(app)
    browser.sign_in("ana")
    browser.post("/agent/next", {})
    typed = {
        "task_id": str(first),
        "disposition": "CONVERTED",
        "CONVERTED.action": "renewed",
        "verified": "no",
        "notes": "wants the gold card",
    }
    refused = browser.post("/agent/log", typed)
    assert refused.status_code == 422
    shown = error_text(refused.text)
    cli_run = CliRunner().invoke(
        cli,
        [
            "--database-url",
            app.settings.database_url,
            "calls",
            "log",
            str(first),
            "--agent",
            "ana",
            "--disposition",
            "CONVERTED",
            "--field",
            "action=renewed",
            "--verified",
            "no",
            "--notes",
            "wants the gold card",
            "--no-input",
        ],
    )
    assert cli_run.exit_code != 0
    assert shown and shown in cli_run.output and "requires field verified=yes" in shown
    assert "wants the gold card" in refused.text  # the form kept what was typed
    assert '<option value="CONVERTED" selected>' in refused.text
    assert log_entries(app) == []
    task = task_row(app, first)
    assert (task.status, task.claimed_by, task.attempts) == ("claimed", "ana", 0)


def test_callback_is_booked_in_the_agents_zone_and_listed(app: App) -> None:
    first, _ = _world(app, agent_zone="America/Los_Angeles")
    browser = Browser(app)
    browser.sign_in("ana")
    sheet = browser.post("/agent/next", {})
    assert "America/New_York" in sheet.text  # the member's zone beside the callback field
    # 09:30 in Los Angeles on the test day = 12:30 in New York = 17:30 UTC.
    done = browser.post(
        "/agent/log",
        {
            "task_id": str(first),
            "disposition": "CALLBACK",
            "CALLBACK.callback_at": "2026-03-02T09:30",
            "CALLBACK.who": "agent",
            "verified": "yes",
        },
    )
    assert 'id="logged"' in done.text, error_text(done.text)
    entry = log_entries(app)[-1]
    assert entry.disposition == "CALLBACK"
    assert datetime.fromisoformat(entry.fields["callback_at"]) == datetime(
        2026, 3, 2, 17, 30, tzinfo=UTC
    )
    listed = done.text.split('id="callbacks"')[1]
    assert "09:30" in listed and "me only" in listed


def test_escalation_moves_the_task_to_the_team(app: App) -> None:
    first, _ = _world(app)
    browser = Browser(app)
    browser.sign_in("ana")
    browser.post("/agent/next", {})
    done = browser.post(
        "/agent/log",
        {
            "task_id": str(first),
            "disposition": "ESCALATED",
            "ESCALATED.team": "escalations",
            "ESCALATED.reason": "billing dispute",
            "verified": "yes",
        },
    )
    assert 'id="logged"' in done.text, error_text(done.text)
    assert log_entries(app)[-1].disposition == "ESCALATED"
    assert task_row(app, first).team == "escalations"


def test_release_gives_the_task_back(app: App) -> None:
    first, _ = _world(app)
    browser = Browser(app)
    browser.sign_in("ana")
    browser.post("/agent/next", {})
    page = browser.post("/agent/release", {"task_id": str(first)})
    assert f"Task {first} released" in page.text
    assert task_row(app, first).status == "open"


def test_a_claim_the_agent_let_expire_cannot_be_logged(app: App, clock) -> None:  # type: ignore[no-untyped-def]
    first, _ = _world(app)
    browser = Browser(app)
    browser.sign_in("ana")
    browser.post("/agent/next", {})
    clock.advance(timedelta(minutes=31))
    refused = browser.post("/agent/log", {"task_id": str(first), "disposition": "NO_ANSWER"})
    assert refused.status_code == 403 and "not yours" in (error_text(refused.text) or "")
    assert log_entries(app) == []
    assert TEST_NOW  # the world's day
