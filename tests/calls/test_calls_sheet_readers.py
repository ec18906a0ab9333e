"""The call sheet is one read of the Core tables whoever asks (#18): `calls next` reads it on
the claim's plain Connection, the console and `calls verify` on an ORM Session (the task,
member and program from its identity map). Both see the same sheet, down to a case's history
and the earlier contacts; on a Session, what it holds unflushed is on the sheet (its execute
flushes first, for Core statements as for ORM queries)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from calls_helpers import TEST_NOW, make_world, unit
from sqlalchemy import event, select

from engine.app import App
from engine.calls.claiming import take_next
from engine.calls.config import load_dispositions
from engine.calls.log import CallInput, log_call
from engine.calls.scripts import CallSheet, call_sheet, gated_call_sheet, next_call
from engine.calls.tasks import claim_next
from engine.calls.verification import verify_claim
from engine.db.models import ActivityEvent, CallTask, CampaignRun, Participant, Program
from engine.db.tables.calls import call_tasks
from engine.programs import set_shown_before_verification
from engine.testing.fakes import make_event

LATER = TEST_NOW + timedelta(hours=4)  # the case's first follow-up is due


def test_the_sheet_on_a_connection_is_the_sheet_on_a_session(app: App) -> None:
    w = make_world(app)
    w.agent("ana")
    member = w.member(first_name="Ada", last_name="Lovelace")
    first = w.task(member)
    with unit(app) as s:
        make_event(s, s.get_one(Participant, member), type="redemption", occurred_at=TEST_NOW,
                   points=-500, amount=Decimal("12.50"))  # fmt: skip
        assert claim_next(s, "ana", at=TEST_NOW) is not None
        complaint = {"category": "billing", "summary": "charged twice"}
        call = CallInput(first, "ana", "COMPLAINT", complaint, True)
        logged = log_call(s, call, load_dispositions(None), at=TEST_NOW)
    assert logged.case_id is not None

    with app.engine.connect() as connection, connection.begin():
        claim = take_next(connection, "ana", settings=app.settings, at=LATER)
        assert claim is not None
        served = next_call(connection, claim, settings=app.settings, at=LATER, gated=True)
        on_connection = call_sheet(connection, claim.task_id, settings=app.settings, at=LATER)
    with unit(app) as s:
        on_session = call_sheet(s, claim.task_id, settings=app.settings, at=LATER)
    assert on_connection == on_session
    # Not vacuous: the case with its history, the complaint call, the redemption.
    assert on_session.case is not None and on_session.case.case.id == logged.case_id
    assert [h.kind for h in on_session.case.history] == ["opened"]
    assert [c.what for c in on_session.contacts] == ["COMPLAINT"]
    assert [r["points"] for r in on_session.redemptions] == [-500]
    # Before verification `calls next` shows what the program shows (not the case).
    assert served.gate is not None and not served.gate.verified
    assert served.sheet.case is None and served.sheet.account.keys() == {"tier"}

    # The console's sheet after the agent's Verified, the verification not yet flushed.
    with unit(app) as s:
        task = verify_claim(s, claim.task_id, "ana", at=LATER)
        sheet, gate = gated_call_sheet(s, task, settings=app.settings, at=LATER, zone="UTC")
    assert gate.verified and gate.verified_at == f"{LATER:%H:%M}"
    assert sheet == on_session


def test_a_sessions_unflushed_rows_are_on_its_sheet(app: App) -> None:
    w = make_world(app)
    member = w.member()
    task = w.task(member)
    with unit(app) as s:
        # Held by the session, as on the console's page: the sheet reads these by id from
        # its identity map, which flushes nothing.
        held = s.get_one(CallTask, task)
        person = s.get_one(Participant, member)
        s.get_one(Program, person.program_id)
        s.get_one(CampaignRun, held.run_id)
        s.add(
            ActivityEvent(
                program_id=w.program_id,
                participant_id=member,
                type="redemption",
                occurred_at=TEST_NOW,
                points=-200,
                reference="unflushed",
                source="test",
                created_at=TEST_NOW,
            )
        )
        sheet = call_sheet(s, task, settings=app.settings, at=TEST_NOW)
    assert [r["points"] for r in sheet.redemptions] == [-200]


def test_a_sheet_before_verification_reads_none_of_what_its_gate_hides(app: App) -> None:
    """`calls next` shows the activity, the earlier contacts and the case before verification
    only when the program says so: otherwise the sheet does not read them (#18)."""
    w = make_world(app)
    w.agent("ana")
    member = w.member()
    first = w.task(member)
    with unit(app) as s:
        make_event(s, s.get_one(Participant, member), type="redemption", occurred_at=TEST_NOW,
                   points=-500)  # fmt: skip
        assert claim_next(s, "ana", at=TEST_NOW) is not None
        complaint = {"category": "billing", "summary": "charged twice"}
        call = CallInput(first, "ana", "COMPLAINT", complaint, True)
        assert log_call(s, call, load_dispositions(None), at=TEST_NOW).case_id is not None
    with app.engine.connect() as connection, connection.begin():
        claim = take_next(connection, "ana", settings=app.settings, at=LATER)
        assert claim is not None
        task = connection.execute(select(call_tasks).where(call_tasks.c.id == claim.task_id)).one()

    def gated(shown: str | None) -> tuple[CallSheet, list[str]]:
        with unit(app) as s:
            set_shown_before_verification(s, "loyalty", shown)
        statements: list[str] = []

        def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        event.listen(app.engine, "before_cursor_execute", seen)
        try:
            with app.engine.connect() as connection:
                sheet, _ = gated_call_sheet(
                    connection, task, settings=app.settings, at=LATER, zone="UTC"
                )
        finally:
            event.remove(app.engine, "before_cursor_execute", seen)
        return sheet, statements

    hidden, statements = gated(None)  # the default: only the tier besides name and phone
    assert (hidden.activity, hidden.redemptions, hidden.contacts, hidden.case) == ([], [], [], None)
    unread = ("activity_events", "caller_log", "outbox_messages", "message_events", "cases")
    assert [s for s in statements if any(f"FROM {table}" in s for table in unread)] == []
    shown, statements = gated("activity,contacts,case")
    # Not vacuous: shown, they are read, and on the sheet.
    assert [r["points"] for r in shown.redemptions] == [-500]
    assert [c.what for c in shown.contacts] == ["COMPLAINT"]
    assert shown.case is not None
    assert any("FROM activity_events" in s for s in statements)
