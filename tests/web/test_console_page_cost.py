"""What the agent's pages cost: the statements of one GET /agent and one POST /agent/log
(answered with the page) stay within a cap that does not grow with the agent's history (no
N+1; the page reads the claim with its member, program and run in one statement), and the
call script is rendered by a renderer kept for the process that still picks up a script
edited on disk, or a language's file added, as the page did when it built a renderer per
sheet."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from console_helpers import Browser, add_console_user, log_entries, make_world
from sqlalchemy import event

from engine.app import App
from engine.calls.scripts import script_renderer
from engine.settings import Settings
from engine.testing.statements import statements_of
from engine.web import pages

ROOT = Path(__file__).resolve().parents[2]
TASK = re.compile(r'name="task_id" value="(\d+)"')
# GET /agent holding a claim, on PostgreSQL: the session's user with their agent's row and
# open pause (1), the claim with member, program and run (1), consents and suppressions of
# the member (2), my callbacks today, the plan's entries and holidays (3). SQLite counts its
# BEGIN too (one session for the user and the page). 18 before the claim was read with its
# rows, 14 before the user and agent were one statement, 13 before the pause and the plan's
# agent came with the user, 11 before the sheet left unread what its gate hides before
# verification (activity, outbox, message events and caller log).
PAGE_STATEMENTS = {"postgresql": 7, "sqlite": 8}
# POST /agent/log of a final disposition, answered with the agent's page: the user with their
# agent and open pause (1), the caller log's lock (PostgreSQL) or the write lock (SQLite), the
# claim, member and program (3), the agent, the task locked, the run (3), the log's head, entry
# and checkpoint (3), the task's UPDATE, the contact, the run's status (3), then the page in
# the log's transaction: the claim held (1: none, the call is logged), my callbacks today, the
# plan's entries and holidays (3); the "logged" line is the log's result, not read again.
# SQLite counts its BEGIN too (one session). 14 (15) for the log alone before #19 answered it
# with the page, which its 303's GET /agent?logged=N read in 6 (7) more on a second checkout;
# 16 before the dispositions' program came from the rows read, 15 before the user and agent
# were one statement; SQLite 16 before the user's own session.
LOG_STATEMENTS = {"postgresql": 18, "sqlite": 19}
# POST /agent/next answered with the call sheet: the user with their agent and open pause (1),
# the claim's (12), then GET /agent's 7 but its user in the claim's transaction: the claim
# hands the page what it read (the claim ended any pause). SQLite counts its BEGIN too. 20
# (21) before the page read the user again; the POST and GET of before #19 ran the same 20
# on two checkouts and in two transactions.
NEXT_STATEMENTS = {"postgresql": 19, "sqlite": 20}


def _claim_and_count(app: App, browser: Browser) -> tuple[int, int, int]:
    """Next call, then (task id, statements of GET /agent, statements of its log)."""
    browser.post("/agent/next", {})
    with statements_of(app.engine) as page_statements:
        page = browser.get("/agent")
    found = TASK.search(page.text)
    assert page.status_code == 200 and found is not None
    task = found.group(1)
    form = {
        "csrf_token": browser.csrf,
        "task_id": task,
        "disposition": "NOT_INTERESTED",
        "NOT_INTERESTED.reason": "cost test",
        "verified": "yes",
    }
    with statements_of(app.engine) as log_statements:
        logged = browser.client.post("/agent/log", data=form, follow_redirects=False)
    assert logged.status_code == 200, logged.text
    browser._remember(logged.text)
    return int(task), len(page_statements), len(log_statements)


def test_page_and_log_statements_are_capped_and_do_not_grow_with_history(app: App) -> None:
    world = make_world(app)
    world.agent("ana")
    for n in range(6):
        world.task(world.member(first_name="Ada", last_name=f"Lovelace{n}"))
    add_console_user(app, "ana")
    browser = Browser(app)
    browser.sign_in("ana")
    dialect = app.engine.dialect.name
    costs = [_claim_and_count(app, browser) for _ in range(6)]
    served = [task for task, _, _ in costs]
    assert len(set(served)) == 6
    pages = {page for _, page, _ in costs}
    logs = {log for _, _, log in costs}
    # The first page (nothing logged yet) and the sixth (five calls in the agent's plan)
    # cost the same.
    assert pages == {PAGE_STATEMENTS[dialect]}, pages
    assert logs == {LOG_STATEMENTS[dialect]}, logs


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


def test_next_call_answers_with_the_call_sheet_read_on_the_claims_checkout(app: App) -> None:
    browser = _ana_signed_in(app)
    browser.get("/agent")  # the signing key and the page's first compile, out of the count
    checkouts: list[object] = []

    def checked_out(*_args: object) -> None:
        checkouts.append(None)

    event.listen(app.engine, "checkout", checked_out)
    try:
        with statements_of(app.engine) as statements:
            answer = browser.client.post(
                "/agent/next", data={"csrf_token": browser.csrf}, follow_redirects=False
            )
    finally:
        event.remove(app.engine, "checkout", checked_out)
    # The call sheet in the claim's answer, not a redirect to GET /agent (#19).
    assert answer.status_code == 200, answer.status_code
    assert "Ada Lovelace" in answer.text and TASK.search(answer.text) is not None
    assert 'data-address="/agent"' in answer.text  # the address the browser shows
    # Who is asking, the claim and its page: one connection (two before #19's single
    # checkout, three with the page's GET).
    assert len(checkouts) == 1
    assert len(statements) == NEXT_STATEMENTS[app.engine.dialect.name], len(statements)


def test_a_logged_call_answers_with_the_page_read_on_the_logs_checkout(app: App) -> None:
    browser, task = _ana_holding_a_claim(app)
    answer, checkouts = _one_checkout_post(app, browser, "/agent/log", _final_log_form(task))
    # The page with its "logged" line in the log's answer, not a redirect to
    # GET /agent?logged=N (#19); the browser shows that address (console.js).
    assert answer.status_code == 200, answer.status_code
    seq = log_entries(app, "ana")[-1].seq
    assert f'id="logged">Logged (caller log #{seq}): NOT_INTERESTED' in answer.text
    assert f'data-address="/agent?logged={seq}"' in answer.text
    assert TASK.search(answer.text) is None  # the call is logged: no claim on the page
    assert 'action="/agent/next"' in answer.text
    # Who is asking, the log and the page: one connection (two before #19).
    assert checkouts == 1
    # The same page as GET /agent?logged=N shows, but for the form's fresh CSRF token.
    again = browser.get(f"/agent?logged={seq}")
    assert again.status_code == 200
    assert _without_csrf(answer.text).replace(
        f'data-address="/agent?logged={seq}"', 'data-address="/agent"'
    ) == _without_csrf(again.text)


def test_a_fault_in_the_page_after_a_log_keeps_the_logged_call(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page read in the log's transaction must not take the log down with it: a page that
    fails (here: any error of the page's own code) answers with the redirect to
    GET /agent?logged=N, and the call stays logged."""
    browser, task = _ana_holding_a_claim(app)

    def broken_page(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a script that does not render")

    monkeypatch.setattr(pages, "agent_page", broken_page)
    answer, _checkouts = _one_checkout_post(app, browser, "/agent/log", _final_log_form(task))
    entries = log_entries(app, "ana")
    assert [e.disposition for e in entries] == ["NOT_INTERESTED"]
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/agent?logged={entries[-1].seq}"


def _ana_signed_in(app: App) -> Browser:
    """Agent ana signed in, with Ada Lovelace's task open for her: her browser."""
    world = make_world(app)
    world.agent("ana")
    world.task(world.member(first_name="Ada", last_name="Lovelace"))
    add_console_user(app, "ana")
    browser = Browser(app)
    browser.sign_in("ana")
    return browser


def _ana_holding_a_claim(app: App) -> tuple[Browser, str]:
    """Agent ana signed in, holding her claim of Ada Lovelace's task: (her browser, task id)."""
    browser = _ana_signed_in(app)
    found = TASK.search(browser.post("/agent/next", {}).text)
    assert found is not None
    return browser, found.group(1)


def _final_log_form(task: str) -> dict[str, str]:
    """The log form of a final disposition (NOT_INTERESTED: the task closes), verified."""
    return {
        "task_id": task,
        "disposition": "NOT_INTERESTED",
        "NOT_INTERESTED.reason": "one answer",
        "verified": "yes",
    }


def _without_csrf(text: str) -> str:
    return re.sub(r'name="csrf_token" value="[^"]+"', "", text)


def _one_checkout_post(
    app: App, browser: Browser, path: str, form: dict[str, str]
) -> tuple[Any, int]:
    """POST ``path`` with the browser's CSRF token; (the answer, pool checkouts it took)."""
    checkouts: list[object] = []

    def checked_out(*_args: object) -> None:
        checkouts.append(None)

    event.listen(app.engine, "checkout", checked_out)
    try:
        answer = browser.client.post(
            path, data={"csrf_token": browser.csrf, **form}, follow_redirects=False
        )
    finally:
        event.remove(app.engine, "checkout", checked_out)
    return answer, len(checkouts)


def test_verified_and_release_answer_with_the_page_read_on_their_checkout(app: App) -> None:
    browser, task = _ana_holding_a_claim(app)
    # Verified: the call sheet with its full account, not a redirect to GET /agent (#19).
    verified, checkouts = _one_checkout_post(app, browser, "/agent/verify", {"task_id": task})
    assert verified.status_code == 200, verified.status_code
    assert 'id="verified"' in verified.text and 'id="gated"' not in verified.text
    assert TASK.search(verified.text) is not None
    assert 'data-address="/agent"' in verified.text
    assert checkouts == 1
    # Released: the page with its "released" line, shown at GET /agent?released=N's address.
    released, checkouts = _one_checkout_post(app, browser, "/agent/release", {"task_id": task})
    assert released.status_code == 200, released.status_code
    assert f'id="released">Task {task} released' in released.text
    assert f'data-address="/agent?released={task}"' in released.text
    assert TASK.search(released.text) is None
    assert checkouts == 1


def test_pause_and_resume_answer_with_the_page_read_on_their_checkout(app: App) -> None:
    browser = _ana_signed_in(app)
    browser.get("/agent")
    # Paused: the page with its pause and Resume, not a redirect to GET /agent (#19).
    paused, checkouts = _one_checkout_post(app, browser, "/agent/pause", {"code": "break"})
    assert paused.status_code == 200, paused.status_code
    assert "Paused: <strong>break</strong> since" in paused.text
    assert 'id="resume"' in paused.text and 'id="next"' not in paused.text
    assert 'data-address="/agent"' in paused.text
    assert checkouts == 1
    # The same page as GET /agent shows, but for the form's fresh CSRF token.
    assert _without_csrf(paused.text) == _without_csrf(browser.get("/agent").text)
    # Resumed: the page with Next call again, read in the resume's transaction.
    resumed, checkouts = _one_checkout_post(app, browser, "/agent/resume", {})
    assert resumed.status_code == 200, resumed.status_code
    assert 'id="paused"' not in resumed.text and 'id="next"' in resumed.text
    assert 'data-address="/agent"' in resumed.text
    assert checkouts == 1
    assert _without_csrf(resumed.text) == _without_csrf(browser.get("/agent").text)
