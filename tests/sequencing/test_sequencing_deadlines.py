"""Issues #15, #16, #21: deadlines, standing conditions, spacing after a pause, content a
provider would refuse, render errors that pause a run, and missing templates."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from seq_helpers import DAY, HOUR, TEST_NOW, definition, enrollments, launch, messages, tasks
from sqlalchemy import select, update

from engine.app import App, build_app
from engine.calls.agents import add_agent
from engine.calls.listing import list_calls
from engine.calls.tasks import claim_next
from engine.db.models import CallTask, CampaignRun, OutboxMessage, Participant, Program
from engine.errors import ConfigError
from engine.sending.dispatch import dispatch
from engine.sequencing import advance
from engine.testing.fakes import RecordingChannel, make_consent, make_participant, unit

ROOT = Path(__file__).resolve().parents[2]


# Keeps a run with a call step active (it has an enrollment with steps left).
LATER_EMAIL = {"id": "email-9", "channel": "email", "template": "points_expiring", "delay": "9d"}


def _member(app: App, program: Program, external_id: str = "D1", **fields: Any) -> int:
    with unit(app) as s:
        p = make_participant(s, program, at=TEST_NOW, external_id=external_id, **fields)
        for channel in ("sms", "call"):
            make_consent(s, p, channel=channel, status="opted_in", at=TEST_NOW)
        return p.id


def _send(app: App, at: datetime) -> Any:
    app.clock.set(at)  # type: ignore[attr-defined]
    channels = {
        "email": RecordingChannel("email", clock=app.clock),
        "sms": RecordingChannel("sms", clock=app.clock),
    }
    return dispatch(app, channels, worker="test")


# --------------------------------------------------------------------------- deadlines


def test_expires_before_a_member_date_stops_at_the_start_of_that_day(
    app: App, program: Program
) -> None:
    # Renewal on 4 March (New York): the reminder may go until 4 March 00:00 New York time.
    member = _member(app, program, renewal_date=date(2026, 3, 4), timezone="America/New_York")
    late = _member(app, program, "D2", renewal_date=date(2026, 3, 2))
    step = {
        "id": "email-1",
        "channel": "email",
        "template": "points_expiring",
        "expires_before": "renewal_date",
    }
    launch(app, definition(steps=[step]))
    summary = advance(app, at=TEST_NOW)
    assert summary.messages == {"email": 1} and summary.messages_skipped == {"expired": 1}
    by_member = {m.participant_id: m for m in messages(app)}
    assert by_member[member].status == "queued"
    assert by_member[member].expires_at == datetime.fromisoformat("2026-03-04T05:00:00+00:00")
    assert (by_member[late].status, by_member[late].status_reason) == ("skipped", "expired")


def test_the_dispatcher_skips_a_queued_message_past_its_deadline(
    app: App, program: Program
) -> None:
    _member(app, program)
    launch(app, definition())
    advance(app, at=TEST_NOW)
    (queued,) = messages(app)
    assert queued.status == "queued" and queued.expires_at == TEST_NOW + 3 * DAY
    # An outage (or a stopped cron) of four days: the message is never sent late.
    summary = _send(app, TEST_NOW + 4 * DAY)
    assert summary.sent == 0
    (skipped,) = messages(app)
    assert (skipped.status, skipped.status_reason, skipped.sent_at) == ("skipped", "expired", None)


def test_a_message_within_its_deadline_still_goes(app: App, program: Program) -> None:
    _member(app, program)
    launch(app, definition())
    advance(app, at=TEST_NOW)
    assert _send(app, TEST_NOW + 2 * DAY).sent == 1


def test_call_tasks_past_their_deadline_are_not_served_and_are_closed(
    app: App, program: Program
) -> None:
    _member(app, program, phone="+14155550100")
    step = {"id": "call-1", "channel": "call", "script": "winback", "expires_after": "2d"}
    launch(app, definition(steps=[step, LATER_EMAIL]))
    advance(app, at=TEST_NOW)
    (task,) = tasks(app)
    assert task.expires_at == TEST_NOW + 2 * DAY and task.status == "open"
    with unit(app) as s:
        add_agent(s, "ann", name="Ann", teams=["retention"], at=TEST_NOW)
    with unit(app) as s:
        assert [t.task_id for t in list_calls(s, at=TEST_NOW)] == [task.id]
    later = TEST_NOW + 3 * DAY
    with unit(app) as s:
        assert list_calls(s, at=later) == []
        assert claim_next(s, "ann", at=later) is None
    (closed,) = tasks(app)
    assert (closed.status, closed.close_reason) == ("closed", "expired")


# --------------------------------------------------------------------------- spacing


def test_a_condition_on_an_earlier_email_waits_until_it_has_gone(
    app: App, program: Program
) -> None:
    _member(app, program)
    steps = [
        {"id": "email-1", "channel": "email", "template": "points_expiring"},
        {
            "id": "sms-1",
            "channel": "sms",
            "template": "points_expiring",
            "delay": "1d",
            "condition": "email_not_opened",
        },
    ]
    launch(app, definition(steps=steps))
    advance(app, at=TEST_NOW)
    # The email has not gone (an outage): the condition is not judged yet.
    summary = advance(app, at=TEST_NOW + DAY)
    assert summary.steps_skipped == {} and summary.messages == {} and summary.waiting == 1
    # It goes two hours later and is opened: the SMS is not sent, a day after it went.
    with unit(app) as s:
        s.execute(
            update(OutboxMessage).values(
                status="sent", sent_at=TEST_NOW + DAY + 2 * HOUR, opened_at=TEST_NOW + 2 * DAY
            )
        )
    assert advance(app, at=TEST_NOW + 2 * DAY + HOUR).messages == {}
    final = advance(app, at=TEST_NOW + 2 * DAY + 2 * HOUR)
    assert final.steps_skipped == {"email_not_opened": 1}


def test_the_dispatcher_keeps_the_spacing_after_an_outage(app: App, program: Program) -> None:
    # email-1 could not go (outage) while sms-1 was made on time a day later: the SMS waits
    # until a day after the email actually went.
    _member(app, program)
    steps = [
        {"id": "email-1", "channel": "email", "template": "points_expiring"},
        {"id": "sms-1", "channel": "sms", "template": "points_expiring", "delay": "1d"},
    ]
    launch(app, definition(steps=steps))
    advance(app, at=TEST_NOW)
    advance(app, at=TEST_NOW + DAY)
    assert [m.status for m in messages(app)] == ["queued", "queued"]
    back = TEST_NOW + DAY + 2 * HOUR
    summary = _send(app, back)
    assert summary.sent == 1
    email, sms = messages(app)
    assert email.sent_at == back and sms.status == "queued"
    assert sms.not_before >= back
    assert _send(app, back + 12 * HOUR).sent == 0
    assert _send(app, back + DAY).sent == 1


# --------------------------------------------------------------------------- standing


def test_a_closed_account_exits_and_is_not_sent_or_called(app: App, program: Program) -> None:
    closed = _member(app, program, phone="+14155550101")
    _member(app, program, "D2", phone="+14155550102")
    steps = [
        {"id": "email-1", "channel": "email", "template": "points_expiring"},
        {"id": "call-1", "channel": "call", "script": "winback", "delay": "1d"},
        {"id": "email-2", "channel": "email", "template": "points_expiring", "delay": "9d"},
    ]
    launch(app, definition(steps=steps))
    advance(app, at=TEST_NOW)
    with unit(app) as s:
        s.execute(update(Participant).where(Participant.id == closed).values(status="closed"))
    # Queued before the account closed: the gate skips it.
    _send(app, TEST_NOW + HOUR)
    by_member = {m.participant_id: m for m in messages(app)}
    assert (by_member[closed].status, by_member[closed].status_reason) == (
        "skipped",
        "no_longer_eligible",
    )
    assert by_member[closed].sent_at is None
    # The next step falls due: the enrollment exits with the reason.
    summary = advance(app, at=TEST_NOW + DAY)
    assert summary.exited == 1 and summary.call_tasks == 1
    gone = next(e for e in enrollments(app) if e.participant_id == closed)
    assert gone.state == "exited" and "no_longer_eligible" in (gone.exit_reason or "")
    assert "status" in (gone.exit_reason or "")


def test_a_call_task_of_a_member_who_no_longer_qualifies_is_closed_at_claim(
    app: App, program: Program
) -> None:
    member = _member(app, program, phone="+14155550103")
    call = {"id": "call-1", "channel": "call", "script": "winback"}
    launch(app, definition(steps=[call, LATER_EMAIL]))
    advance(app, at=TEST_NOW)
    with unit(app) as s:
        s.execute(update(Participant).where(Participant.id == member).values(status="closed"))
        add_agent(s, "ann", name="Ann", teams=["retention"], at=TEST_NOW)
    with unit(app) as s:
        listed = list_calls(s, at=TEST_NOW)
        assert [t.blocked for t in listed] == ["no_longer_eligible"]
        assert claim_next(s, "ann", at=TEST_NOW) is None
    (task,) = tasks(app)
    assert (task.status, task.close_reason) == ("closed", "not callable: no_longer_eligible")


def test_standing_can_be_turned_off(app: App, program: Program) -> None:
    member = _member(app, program)
    launch(app, definition(standing=[]))
    with unit(app) as s:
        s.execute(update(Participant).where(Participant.id == member).values(status="closed"))
    assert advance(app, at=TEST_NOW).messages == {"email": 1}


# --------------------------------------------------------------------------- content


@pytest.fixture
def templated(app: App, tmp_path: Path) -> Iterator[App]:
    """The app with a copy of templates/ plus templates that go wrong for some members."""
    folder = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", folder)
    (folder / "email" / "blank.subject.j2").write_text(
        '{% if participant.tier == "gold" %}Gold news{% endif %}'
    )
    (folder / "email" / "blank.html.j2").write_text("<p>Hello</p>")
    (folder / "email" / "blank.txt.j2").write_text("Hello")
    (folder / "sms" / "long.txt.j2").write_text(
        "{% for i in range(participant.points_expiring) %}x{% endfor %}"
    )
    (folder / "email" / "coded.subject.j2").write_text(
        "Code {{ participant.attributes.code.upper() }}"
    )
    (folder / "email" / "coded.html.j2").write_text("<p>Hi</p>")
    (folder / "email" / "coded.txt.j2").write_text("Hi")
    settings = app.settings.model_copy(update={"templates_dir": folder})
    other = build_app(settings, clock=app.clock)
    yield other
    other.close()


def test_content_a_provider_would_refuse_is_never_queued(templated: App, program: Program) -> None:
    app = templated
    _member(app, program, "G", tier="gold", points_expiring=20)
    _member(app, program, "S", tier="silver", points_expiring=2000)
    _member(app, program, "M", tier="gold", points_expiring=400)
    steps = [
        {"id": "email-1", "channel": "email", "template": "blank"},
        {"id": "sms-1", "channel": "sms", "template": "long", "sms_max_segments": 2},
    ]
    launch(app, definition(steps=steps))
    advance(app, at=TEST_NOW)
    outcome = {(m.step_id, m.participant_id): (m.status, m.status_reason) for m in messages(app)}
    with unit(app) as s:
        ids = {p.external_id: p.id for p in s.scalars(select(Participant))}
    assert outcome[("email-1", ids["G"])] == ("queued", None)
    assert outcome[("email-1", ids["S"])] == ("skipped", "empty_subject")
    assert outcome[("sms-1", ids["G"])][0] == "queued"
    assert outcome[("sms-1", ids["S"])] == ("skipped", "sms_too_long")
    assert outcome[("sms-1", ids["M"])] == ("skipped", "over_segment_limit")


def test_a_few_render_errors_skip_those_members(templated: App, program: Program) -> None:
    app = templated
    _member(app, program, "BAD", attributes={})
    for i in range(30):
        _member(app, program, f"OK{i}", attributes={"code": f"c{i}"})
    launch(app, definition(steps=[{"id": "email-1", "channel": "email", "template": "coded"}]))
    summary = advance(app, at=TEST_NOW)
    assert summary.messages == {"email": 30} and summary.messages_skipped == {"render_error": 1}
    assert summary.runs_paused == {}


def test_many_render_errors_pause_the_run_instead_of_burning_the_audience(
    templated: App, program: Program
) -> None:
    app = templated
    for i in range(10):
        _member(app, program, f"BAD{i}", attributes={})
    for i in range(10):
        _member(app, program, f"OK{i}", attributes={"code": f"c{i}"})
    run_id = launch(
        app, definition(steps=[{"id": "email-1", "channel": "email", "template": "coded"}])
    )
    summary = advance(app, at=TEST_NOW)
    assert list(summary.runs_paused) == [run_id] and "could not be rendered" in summary.message
    assert messages(app) == []
    assert {e.state for e in enrollments(app)} == {"active"}
    with unit(app) as s:
        run = s.get(CampaignRun, run_id)
        assert run is not None and run.status == "paused"
        assert "10 of 20" in (run.status_reason or "") and "email-1" in (run.status_reason or "")


# --------------------------------------------------------------------------- configuration


def test_a_missing_templates_folder_stops_advance_before_anything_is_written(
    app: App, program: Program, tmp_path: Path
) -> None:
    _member(app, program)
    launch(app, definition())
    settings = app.settings.model_copy(update={"templates_dir": tmp_path / "nowhere"})
    elsewhere = build_app(settings, clock=app.clock)
    try:
        with pytest.raises(ConfigError, match=r"templates folder .* not found"):
            advance(elsewhere, at=TEST_NOW)
    finally:
        elsewhere.close()
    assert messages(app) == []
    with unit(app) as s:
        assert s.scalar(select(CampaignRun.status)) == "active"
        assert s.scalars(select(CallTask)).all() == []


def test_a_missing_template_file_stops_advance(app: App, program: Program, tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", folder)
    (folder / "email" / "points_expiring.txt.j2").unlink()
    _member(app, program)
    launch(app, definition())
    settings = app.settings.model_copy(update={"templates_dir": folder})
    elsewhere = build_app(settings, clock=app.clock)
    try:
        with pytest.raises(ConfigError, match=r"points_expiring\.txt\.j2 .*not found"):
            advance(elsewhere, at=TEST_NOW)
    finally:
        elsewhere.close()
    assert messages(app) == []


def test_a_missing_templates_folder_stops_the_tick_before_anything_is_written(
    app: App, program: Program, tmp_path: Path
) -> None:
    from engine.tick import tick

    _member(app, program)
    launch(app, definition())
    settings = app.settings.model_copy(
        update={"templates_dir": tmp_path / "nowhere", "campaigns_dir": tmp_path / "campaigns"}
    )
    elsewhere = build_app(settings, clock=app.clock)
    try:
        with pytest.raises(ConfigError, match="nothing was done"):
            tick(elsewhere, budget_seconds=5)
    finally:
        elsewhere.close()
    assert messages(app) == []
    assert {e.next_step_index for e in enrollments(app)} == {0}
