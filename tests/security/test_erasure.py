"""Erasure that erases (issue #17): after `participants erase`, no table holds the member's
personal data in clear; what stays is hashed suppressions, counts and the caller log's record
that calls happened; later provider events, unsubscribe POSTs and re-imports bring nothing back."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, inspect, select, text

from cli import cli
from engine.app import App
from engine.calls import caller_log
from engine.consent.provider_events import record_event
from engine.consent.suppressions import add_suppression
from engine.consent.unsubscribe import signer_for
from engine.db.models import (
    CallTask,
    Enrollment,
    MessageEvent,
    OutboxMessage,
    Participant,
    RejectedWebhookEvent,
    Suppression,
)
from engine.participants.erasure import ERASED_PREFIX
from engine.testing.fakes import (
    make_consent,
    make_outbox_message,
    make_participant,
    make_program,
    make_run,
    unit,
)

EMAIL = "mei.wang@example.com"
PHONE = "+12025550188"
NAME = "Meiqiang"


def seed(app: App) -> tuple[int, int]:
    """A member with everything the engine can hold about a person; returns (member, other)."""
    now = app.clock.now()
    with unit(app) as s:
        program = make_program(s, at=now)
        member = make_participant(
            s,
            program,
            at=now,
            external_id="M-42",
            first_name=NAME,
            last_name="Wang",
            email=EMAIL,
            phone=PHONE,
            tier="gold",
            attributes={"nickname": "Mei-Mei"},
        )
        other = make_participant(s, program, at=now, external_id="M-43")
        make_consent(s, member, channel="sms", status="opted_in", at=now)
        run = make_run(s, program, at=now)
        sent = make_outbox_message(
            s,
            run,
            member,
            at=now,
            status="sent",
            to_address=EMAIL,
            content={"subject": f"Hi {NAME}", "text": f"Dear {NAME}", "html": "", "headers": {}},
        )
        make_outbox_message(s, run, member, at=now, step_id="email-2", to_address=EMAIL)
        make_outbox_message(s, run, other, at=now, to_address="other@example.com")
        record_event(
            s,
            provider="sendgrid",
            provider_event_id="ev-1",
            event="delivered",
            occurred_at=now,
            received_at=now,
            outbox_id=sent.id,
            participant_id=member.id,
            detail={"email": EMAIL},
        )
        add_suppression(s, EMAIL, "email", "opt_out", "test", at=now)  # plaintext before erasure
        s.add(
            RejectedWebhookEvent(
                source="sendgrid",
                reason="a lone surrogate",
                payload=json.dumps({"email": EMAIL, "event": "open", "x": "\\ud800"}),
                payload_digest="d" * 64,
                received_at=now,
            )
        )
        enrollment = s.scalar(select(Enrollment).where(Enrollment.participant_id == member.id))
        task = CallTask(
            kind="campaign",
            run_id=run.id,
            enrollment_id=enrollment.id if enrollment else None,
            participant_id=member.id,
            campaign=run.campaign,
            status="open",
            due_at=now,
            created_at=now,
            updated_at=now,
        )
        s.add(task)
        s.flush()
        caller_log.append(
            s,
            task_id=task.id,
            participant_id=member.id,
            external_id="M-42",
            program=program.key,
            campaign=run.campaign,
            run_id=run.id,
            task_kind="campaign",
            agent="ana",
            number_dialled=PHONE,
            disposition="CALLBACK",
            human_contact=True,
            verified=True,
            fields={"when": "tomorrow"},
            notes=f"{NAME} asked for a call back",
            record=f"CALLBACK - {NAME}",
            claimed_at=now,
            logged_at=now,
            handle_seconds=60,
            attempt=1,
            source="agent",
        )
        return member.id, other.id


def clear_text_everywhere(app: App, *needles: str) -> list[str]:
    """Every (table, row) holding one of the needles in clear, over every table."""
    found = []
    with app.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                flat = json.dumps([str(v) for v in row], ensure_ascii=False)
                found += [f"{table}: {n}" for n in needles if n in flat]
    return found


def cli_run(app: App, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--database-url", app.settings.database_url, *args])
    return result.exit_code, result.output


def test_erase_removes_personal_data_from_every_table_and_prints_a_receipt(app: App) -> None:
    member, other = seed(app)
    assert clear_text_everywhere(app, EMAIL, PHONE, NAME)  # the scan sees them before
    code, out = cli_run(app, "participants", "erase", "M-42", "--yes", "--json")
    assert code == 0, out
    [receipt] = json.loads(out)
    assert receipt["removed"]["messages emptied (address and content)"] == 2
    assert receipt["removed"]["queued messages skipped"] == 1
    assert receipt["removed"]["caller log entries emptied"] == 1
    assert receipt["removed"]["open call tasks closed"] == 1
    assert clear_text_everywhere(app, EMAIL, PHONE, NAME, "Mei-Mei", "M-42") == []
    with app.sessions() as s:
        tombstone = s.get(Participant, member)
        assert tombstone is not None and tombstone.external_id.startswith(ERASED_PREFIX)
        assert tombstone.status == "closed"
        # Counts stay: the messages, the call and the other member are all still there.
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 3
        assert s.scalar(select(func.count()).select_from(Suppression)) == 3  # email, sms, call
        other_row = s.get(Participant, other)
        assert other_row is not None and other_row.email is not None
        assert caller_log.verify(s).ok
    code, out = cli_run(app, "participants", "erase", "M-42", "--yes")
    assert code == 0 and "already erased" in out


def test_later_events_unsubscribes_stops_and_reimports_bring_nothing_back(
    app: App, tmp_path: Path
) -> None:
    member, _ = seed(app)
    with unit(app) as s:
        token = signer_for(s, app.settings).sign(member)
    assert cli_run(app, "participants", "erase", "M-42", "--yes")[0] == 0
    now = app.clock.now() + timedelta(hours=1)
    from engine.consent.opt_outs import suppress
    from engine.webhooks.unsubscribe_pages import recipient, unsubscribe

    with unit(app) as s:
        # A SendGrid spam report and an inbound STOP name the address in their payloads.
        record_event(
            s,
            provider="sendgrid",
            provider_event_id="ev-late",
            event="spamreport",
            occurred_at=now,
            received_at=now,
            detail={"email": EMAIL},
        )
        suppress(s, EMAIL, "email", "spam_report", "sendgrid", at=now)
        suppress(s, EMAIL, "all", "opt_out", "unsubscribe", at=now)
        record_event(
            s,
            provider="twilio",
            provider_event_id="SMstop",
            event="inbound",
            occurred_at=now,
            received_at=now,
            detail={"From": PHONE, "body": "STOP"},
        )
        suppress(s, PHONE, "sms", "opt_out", "twilio", at=now)
        who = recipient(s, signer_for(s, app.settings), token)
        assert who is not None and who.email is None and who.phone is None
        assert unsubscribe(s, who, at=now).suppressed == []
    assert clear_text_everywhere(app, EMAIL, PHONE) == []
    with app.sessions() as s:
        late = s.scalar(select(MessageEvent).where(MessageEvent.provider_event_id == "ev-late"))
        assert late is not None and late.detail == {}
    members = tmp_path / "members.csv"
    members.write_text(f"external_id,first_name,email\nM-42,{NAME},{EMAIL}\n")
    _, out = cli_run(app, "participants", "import", str(members))
    assert "rejected 1" in out
    assert "erased participant" in (tmp_path / "members.rejects.csv").read_text()
    with app.sessions() as s:
        assert s.scalar(select(Participant).where(Participant.email == EMAIL)) is None


def test_erase_needs_confirmation_and_names_an_unknown_member(app: App) -> None:
    seed(app)
    code, out = cli_run(app, "participants", "erase", "M-42")
    assert code != 0 and "--yes" in out
    code, out = cli_run(app, "participants", "erase", "NOPE", "--yes")
    assert code != 0 and "no participant 'NOPE'" in out and "Traceback" not in out
