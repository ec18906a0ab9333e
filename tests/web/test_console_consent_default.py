"""Consent by program default where the call uses it (#18): the call sheet (console and
`calls next`) says "call: by program default (set on DATE)" for a member who stated no call
consent, and the call's caller-log entry records it, inside the chain (`calls verify-log`
verifies the entries before and after, and an edit of it breaks the chain). Both databases."""

from __future__ import annotations

import html
import re
from datetime import timedelta

from console_helpers import (
    TEST_NOW,
    Browser,
    add_console_user,
    error_text,
    log_entries,
    make_world,
)
from sqlalchemy import text

from engine.app import App
from engine.calls import caller_log
from engine.calls.scripts import call_sheet
from engine.programs import set_consent_default
from engine.testing.fakes import unit

SET_ON = TEST_NOW - timedelta(days=20)
WORDS = f"by program default (set on {SET_ON:%Y-%m-%d})"


def _consents(page: str) -> str:
    found = re.search(r'<dd id="consents">(.*?)</dd>', page, re.S)
    assert found is not None, page
    return html.unescape(found.group(1))


def _call(ana: Browser, task: int) -> str:
    sheet = ana.post("/agent/next", {})
    assert f'name="task_id" value="{task}"' in sheet.text, error_text(sheet.text)
    form = {"task_id": str(task), "disposition": "NO_ANSWER", "verified": "yes"}
    done = ana.post("/agent/log", form)
    assert 'id="logged"' in done.text, error_text(done.text)
    return str(sheet.text)


def test_the_sheet_and_the_caller_log_say_consent_came_from_the_program(app: App) -> None:
    world = make_world(app)
    world.agent("ana")
    add_console_user(app, "ana")
    stated = world.task(world.member(points_balance=900))  # opted in on file
    unstated = world.task(world.member(consent=None, points_balance=100))
    ana = Browser(app)
    ana.sign_in("ana")

    # Before the program states a default the unstated member is not callable; the member who
    # stated consent is, and their entry records no consent basis (the entry of "before").
    page = _call(ana, stated)
    assert _consents(page) == "call: opted_in"
    with unit(app) as s:
        program_key = s.execute(text("SELECT key FROM programs")).scalar_one()
        set_consent_default(s, program_key, {"call": True}, at=SET_ON)

    page = _call(ana, unstated)
    assert _consents(page) == f"call: {WORDS}"
    with app.sessions() as s:
        sheet = call_sheet(s, unstated, settings=app.settings, at=TEST_NOW)
        assert sheet.consents == {"call": WORDS}  # what `calls next` prints as "call: ..."
        assert call_sheet(s, stated, settings=app.settings, at=TEST_NOW).consents == {
            "call": "opted_in"
        }
    before, after = log_entries(app)
    assert before.task_id == stated and "consent_basis" not in (before.fields or {})
    assert after.task_id == unstated and after.fields == {"consent_basis": f"call: {WORDS}"}
    with app.sessions() as s:
        result = caller_log.verify(s)
    assert result.ok and result.entries == 2, result

    if app.settings.database_url.startswith("sqlite"):  # PostgreSQL's triggers refuse edits
        with unit(app) as s:
            s.execute(
                text("UPDATE caller_log SET fields = :f WHERE seq = :seq"),
                {"f": '{"consent_basis": "call: opted_in"}', "seq": after.seq},
            )
        with app.sessions() as s:
            broken = caller_log.verify(s)
        assert not broken.ok and broken.first_broken_seq == after.seq
