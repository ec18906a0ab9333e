"""advance(): messages and call tasks per step, timing, holdout, paused runs, completion."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from seq_helpers import (
    DAY,
    HOUR,
    TEST_NOW,
    definition,
    enrollments,
    launch,
    messages,
    tasks,
    unit,
)
from sqlalchemy import select, update

from engine import runs
from engine.app import App
from engine.db.models import CampaignRun, Enrollment, OutboxMessage, Participant, Program
from engine.preview import preview
from engine.sequencing import advance
from engine.testing.fakes import make_consent, make_outbox_message, make_participant
from engine.variants import assign_variant

THREE_STEPS = [
    {"id": "email-1", "channel": "email", "template": "points_expiring"},
    {"id": "sms-1", "channel": "sms", "template": "points_expiring", "delay": "2d"},
    {
        "id": "call-1",
        "channel": "call",
        "script": "winback",
        "delay": "3d",
        "team": "retention",
        "max_attempts": 2,
    },
]

# An email step with two equally weighted variants.
AB_EMAIL_STEP = {
    "id": "email-1",
    "channel": "email",
    "variants": [
        {"name": "a", "template": "winback_a", "weight": 1},
        {"name": "b", "template": "winback_b", "weight": 1},
    ],
}


def _members(app: App, program: Program, n: int, **fields: object) -> list[int]:
    ids = []
    with unit(app) as s:
        for i in range(n):
            p = make_participant(
                s,
                program,
                at=TEST_NOW,
                external_id=f"S{i:03d}",
                points_expiring=100 + i,
                locale=["en", "es", "zh", None][i % 4],
                **fields,
            )
            make_consent(s, p, channel="sms", status="opted_in", at=TEST_NOW)
            make_consent(s, p, channel="call", status="opted_in", at=TEST_NOW)
            ids.append(p.id)
    return ids


def test_email_step_renders_exactly_what_preview_shows(app: App, program: Program) -> None:
    _members(app, program, 4)
    loaded = definition()
    run_id = launch(app, loaded)
    summary = advance(app, at=TEST_NOW)
    assert summary.enrollments == 4 and summary.messages == {"email": 4}
    # Every enrollment made its last step, but the emails are still queued: the run is active
    # until they went (a completed run would no longer send, pause or cancel).
    assert summary.completed == 4 and summary.runs_completed == []
    rows = messages(app)
    assert [m.status for m in rows] == ["queued"] * 4
    assert len({m.uid for m in rows}) == 4 and all(len(m.uid) == 32 for m in rows)
    with unit(app) as s:
        for message in rows:
            external_id = s.scalar(
                select(Participant.external_id).where(Participant.id == message.participant_id)
            )
            assert external_id is not None
            shown = preview(s, loaded, "email-1", external_id, settings=app.settings)
            assert shown.email is not None
            assert message.content == {
                "subject": shown.email["subject"],
                "html": shown.email["html"],
                "text": shown.email["text"],
                "headers": shown.email["headers"],
            }
            assert message.locale == shown.locale
            assert message.to_address and message.to_address.endswith("@example.com")
            assert (message.run_id, message.step_id, message.step_index) == (run_id, "email-1", 0)
            assert message.not_before == TEST_NOW and message.variant is None
            assert message.template == "points_expiring" and message.channel == "email"
    assert "List-Unsubscribe" in rows[0].content["headers"]
    # Every language got its own template (es/zh files exist, None falls back to the default).
    assert len({m.content["subject"] for m in rows}) >= 3


def test_steps_follow_their_delays_and_make_calls(app: App, program: Program) -> None:
    _members(app, program, 2)
    run_id = launch(app, definition(steps=THREE_STEPS))
    first = advance(app, at=TEST_NOW + HOUR)
    assert first.messages == {"email": 2} and first.waiting == 2
    assert [e.next_step_index for e in enrollments(app)] == [1, 1]
    assert [e.next_action_at for e in enrollments(app)] == [TEST_NOW + 2 * DAY] * 2

    early = advance(app, at=TEST_NOW + 2 * DAY - HOUR)
    assert early.enrollments == 0 and len(messages(app)) == 2

    second = advance(app, at=TEST_NOW + 2 * DAY)
    assert second.messages == {"sms": 2}
    sms = [m for m in messages(app) if m.channel == "sms"]
    assert {m.not_before for m in sms} == {TEST_NOW + 2 * DAY}
    assert all(set(m.content) == {"body", "encoding", "segments"} for m in sms)
    # The first SMS of the campaign carries the opt-out notice (the template has it already).
    assert all("STOP" in m.content["body"] for m in sms)

    third = advance(app, at=TEST_NOW + 10 * DAY)
    # The last step is a call: the run stays active while its tasks are open (and the messages
    # of the earlier steps are queued), so agents are served them.
    assert third.call_tasks == 2 and third.completed == 2 and third.runs_completed == []
    made = tasks(app)
    assert [(t.kind, t.status, t.script, t.team, t.max_attempts) for t in made] == [
        ("campaign", "open", "winback", "retention", 2)
    ] * 2
    assert {t.due_at for t in made} == {TEST_NOW + 5 * DAY}
    assert {(t.step_id, t.step_index, t.run_id, t.campaign) for t in made} == {
        ("call-1", 2, run_id, "seq-test")
    }
    assert {e.state for e in enrollments(app)} == {"completed"}
    with unit(app) as s:
        run = s.get(CampaignRun, run_id)
        assert run is not None and run.status == "active"


def test_members_launched_together_wait_for_their_own_local_time(
    app: App, program: Program
) -> None:
    # A batch plans members launched together with nothing on record alike, except where a
    # step's time is the member's own: each waits for 10:00 in their zone.
    zones = {}
    with unit(app) as s:
        for external_id, zone in (("Z1", "America/New_York"), ("Z2", "Asia/Tokyo")):
            member = make_participant(s, program, at=TEST_NOW, external_id=external_id)
            member.timezone = zone
            zones[member.id] = zone
    second = {"id": "email-2", "channel": "email", "template": "points_expiring"}
    launch(app, definition(steps=[THREE_STEPS[0], {**second, "delay": "1d", "at": "10:00"}]))
    assert advance(app, at=TEST_NOW).messages == {"email": 2}
    due = {zones[e.participant_id]: e.next_action_at for e in enrollments(app)}
    # The day's delay ends on 3 March 10:00 in New York, and at midnight of 4 March in Tokyo.
    assert due == {
        "America/New_York": datetime(2026, 3, 3, 15, tzinfo=UTC),
        "Asia/Tokyo": datetime(2026, 3, 4, 1, tzinfo=UTC),
    }


def test_a_late_advance_skips_what_expired_and_never_sends_it(app: App, program: Program) -> None:
    # Issue #15: after a pause, messages past their deadline (3 days by default) are made
    # skipped/expired, never queued; the call step has no deadline unless it says so.
    _members(app, program, 1)
    launch(app, definition(steps=THREE_STEPS))
    summary = advance(app, at=TEST_NOW + 30 * DAY)
    assert summary.messages == {} and summary.messages_skipped == {"expired": 2}
    assert summary.call_tasks == 1
    rows = messages(app)
    assert [(m.status, m.status_reason) for m in rows] == [("skipped", "expired")] * 2
    # Each step keeps its own due time, counted from the previous step's; the deadline is
    # 3 days after it.
    assert [m.not_before for m in rows] == [TEST_NOW, TEST_NOW + 2 * DAY]
    assert [m.expires_at for m in rows] == [TEST_NOW + 3 * DAY, TEST_NOW + 5 * DAY]
    assert tasks(app)[0].due_at == TEST_NOW + 5 * DAY and tasks(app)[0].status == "open"


def test_a_late_advance_keeps_the_spacing_of_steps_not_yet_expired(
    app: App, program: Program
) -> None:
    # Issue #21: after a pause, the overdue step goes now and the next one waits its delay
    # after it, instead of both leaving together.
    _members(app, program, 1)
    steps = [{**step, "expires_after": "60d"} for step in THREE_STEPS[:2]]
    launch(app, definition(steps=steps))
    late = TEST_NOW + 30 * DAY
    summary = advance(app, at=late)
    assert summary.messages == {"email": 1} and summary.waiting == 1
    (enrollment,) = enrollments(app)
    assert enrollment.next_step_index == 1 and enrollment.next_action_at == late + 2 * DAY
    # The email went 3 hours later: the SMS is due 2 days after it actually went.
    with unit(app) as s:
        s.execute(update(OutboxMessage).values(status="sent", sent_at=late + 3 * HOUR))
    assert advance(app, at=late + 2 * DAY).messages == {}
    assert advance(app, at=late + 2 * DAY + 3 * HOUR).messages == {"sms": 1}


def test_holdout_gets_nothing_and_completes_with_the_run(app: App, program: Program) -> None:
    _members(app, program, 40)
    run_id = launch(app, definition(holdout_percent=50))
    groups = {e.group for e in enrollments(app)}
    assert groups == {"treatment", "holdout"}
    holdout = {e.participant_id for e in enrollments(app) if e.group == "holdout"}
    summary = advance(app, at=TEST_NOW)
    assert summary.enrollments == 40 - len(holdout)
    assert not {m.participant_id for m in messages(app)} & holdout
    # The emails are queued: the run and its holdout stay open until they went.
    assert summary.runs_completed == []
    assert {e.state for e in enrollments(app) if e.group == "holdout"} == {"active"}
    with unit(app) as s:
        s.execute(update(OutboxMessage).values(status="sent"))
    assert advance(app, at=TEST_NOW + HOUR).runs_completed == [run_id]
    assert {e.state for e in enrollments(app)} == {"completed"}


def test_a_paused_run_waits_and_resumes(app: App, program: Program) -> None:
    _members(app, program, 3)
    run_id = launch(app, definition())
    with unit(app) as s:
        runs.pause_run(s, run_id, at=TEST_NOW)
    paused = advance(app, at=TEST_NOW + DAY)
    assert paused.enrollments == 0 and messages(app) == [] and paused.runs_completed == []
    with unit(app) as s:
        runs.resume_run(s, run_id, at=TEST_NOW + DAY)
    resumed = advance(app, at=TEST_NOW + DAY)
    assert resumed.messages == {"email": 3}
    # Late, but the message keeps the step's due time: the dispatcher sends it at once.
    assert {m.not_before for m in messages(app)} == {TEST_NOW}


def test_a_cancelled_run_makes_nothing(app: App, program: Program) -> None:
    _members(app, program, 3)
    run_id = launch(app, definition())
    with unit(app) as s:
        runs.cancel_run(s, run_id, at=TEST_NOW, reason="wrong list")
    summary = advance(app, at=TEST_NOW + DAY)
    assert summary.enrollments == 0 and messages(app) == []


def test_a_member_without_address_gets_a_skipped_message(app: App, program: Program) -> None:
    with unit(app) as s:
        make_participant(s, program, at=TEST_NOW, email=None)
        make_participant(s, program, at=TEST_NOW)
    launch(app, definition())
    # Planning does not enroll a member who cannot be reached at all: remove the address after.
    with unit(app) as s:
        members = s.scalars(select(Participant).order_by(Participant.id)).all()
    assert len(enrollments(app)) == 1
    with unit(app) as s:
        member = s.get(Participant, members[1].id)
        assert member is not None
        member.email = None
    summary = advance(app, at=TEST_NOW)
    assert summary.messages_skipped == {"no_address": 1} and summary.messages == {}
    (row,) = messages(app)
    assert (row.status, row.status_reason, row.to_address, row.content) == (
        "skipped",
        "no_address",
        None,
        {},
    )


def test_variants_are_deterministic_and_recorded(app: App, program: Program) -> None:
    with unit(app) as s:
        members = [
            make_participant(s, program, at=TEST_NOW, external_id=f"V{i:03d}") for i in range(60)
        ]
        keys = {m.id: m.sample_key for m in members}
    loaded = definition(steps=[AB_EMAIL_STEP])
    launch(app, loaded)
    advance(app, at=TEST_NOW)
    rows = messages(app)
    assert len(rows) == 60
    step = loaded.definition.steps[0]
    assert step.variants is not None
    for message in rows:
        expected = assign_variant(
            step.variants, keys[message.participant_id], "seq-test", "email-1"
        )
        assert (message.variant, message.template) == (expected.name, expected.template)
    counts = {v: sum(m.variant == v for m in rows) for v in ("a", "b")}
    assert counts["a"] > 10 and counts["b"] > 10


def test_advance_twice_changes_nothing(app: App, program: Program) -> None:
    _members(app, program, 5)
    launch(app, definition(steps=THREE_STEPS))
    advance(app, at=TEST_NOW + 30 * DAY)
    before = [(m.uid, m.status) for m in messages(app)], [t.id for t in tasks(app)]
    again = advance(app, at=TEST_NOW + 30 * DAY)
    assert again.enrollments == 0 and again.queued == 0
    assert ([(m.uid, m.status) for m in messages(app)], [t.id for t in tasks(app)]) == before


def test_small_batches_and_limit(app: App, program: Program) -> None:
    _members(app, program, 7)
    launch(app, definition())
    first = advance(app, at=TEST_NOW, batch_size=2, limit=3)
    assert first.enrollments == 3 and len(messages(app)) == 3 and first.runs_completed == []
    rest = advance(app, at=TEST_NOW, batch_size=2)
    assert rest.enrollments == 4 and len(messages(app)) == 7 and rest.runs_completed == []


@pytest.mark.parametrize("workers", [0, 2])
def test_due_rows_out_of_id_order_are_each_advanced_once(
    app: App, program: Program, workers: int
) -> None:
    # The scan resumes after the last (next_action_at, id) handed out: due times that run
    # against the ids, ties among them, small batches and forked workers sharing the cursor
    # must still reach every due enrollment once and leave the not-yet-due one alone.
    _members(app, program, 11)
    launch(app, definition())
    with unit(app) as s:
        rows = s.scalars(select(Enrollment).order_by(Enrollment.id)).all()
        for i, enrollment in enumerate(rows):
            enrollment.next_action_at = TEST_NOW - (i // 2) * HOUR  # later ids due earlier
        rows[-1].next_action_at = TEST_NOW + HOUR
    summary = advance(app, at=TEST_NOW, batch_size=2, workers=workers)
    assert summary.enrollments == 10 and summary.queued == 10 and summary.lost == 0
    assert sorted(m.enrollment_id for m in messages(app)) == [e.id for e in rows[:-1]]
    later = advance(app, at=TEST_NOW + HOUR, batch_size=2, workers=workers)
    assert later.queued == 1 and len(messages(app)) == 11


def test_a_message_already_in_the_outbox_for_the_step_is_kept(app: App, program: Program) -> None:
    # The unique (enrollment, step) key decides: a row already there (PostgreSQL's COPY
    # refuses the batch and it goes again with ON CONFLICT DO NOTHING) stays as it was and
    # the rest of the batch is written.
    _members(app, program, 4)
    run_id = launch(app, definition())
    with unit(app) as s:
        run = s.get(CampaignRun, run_id)
        person = s.scalars(select(Participant).order_by(Participant.id)).first()
        assert run is not None and person is not None
        existing = make_outbox_message(
            s, run, person, at=TEST_NOW, step_id="email-1", content={"subject": "earlier"}
        )
        uid = existing.uid
    summary = advance(app, at=TEST_NOW)
    rows = messages(app)
    assert len(rows) == 4 and summary.enrollments == 4
    assert [m.content for m in rows if m.uid == uid] == [{"subject": "earlier"}]
    assert len({m.enrollment_id for m in rows}) == 4
    assert summary.queued == 4  # counted as planned; the database kept the earlier row
    # The report tallies count what the table took (on SQLite the sequencer counts its own
    # inserts: here from the table, as its batch did not all go in).
    from engine.reports.tallies import read_tallies

    with unit(app) as s:
        assert [(t.step, t.status, t.messages) for t in read_tallies(s, [run_id])] == [
            ("email-1", "queued", 4)
        ]


def test_an_advance_that_does_not_fork_needs_no_process_primitives(
    app: App, program: Program, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tick's advance of a few members runs in this process: it must not need the system's
    # semaphores or shared memory (where they are missing, only a large step would fail).
    import multiprocessing

    def unavailable(*_: object, **__: object) -> None:
        raise OSError("no semaphores here")

    monkeypatch.setattr(multiprocessing, "get_context", unavailable)
    _members(app, program, 3)
    launch(app, definition())
    summary = advance(app, at=TEST_NOW, batch_size=5, workers=2)
    assert summary.queued == 3 and summary.processes == 1


@pytest.mark.parametrize("workers", [0, 2])
def test_forked_workers_make_the_same_messages(app: App, program: Program, workers: int) -> None:
    # The first batch (5) is full, so with workers the remaining 7 go to forked processes.
    _members(app, program, 12)
    launch(app, definition(steps=THREE_STEPS[:2]))
    summary = advance(app, at=TEST_NOW + 2 * DAY, batch_size=5, workers=workers)
    assert summary.messages == {"email": 12, "sms": 12}
    assert summary.processes == max(workers, 1) and summary.enrollments == 12
    rows = messages(app)
    # Bodies depend only on the member and the step: compare with an in-process render.
    from engine.consent.unsubscribe import signing_key
    from engine.sequencing import RendererConfig, RenderItem, render_item
    from engine.templates import participant_data

    with unit(app) as s:
        key = signing_key(s, app.settings)
        people = {p.id: p for p in s.scalars(select(Participant))}
    renderer = RendererConfig(
        str(app.settings.templates_dir), app.settings.postal_address, app.settings.public_url, key
    ).build()
    for message in rows:
        person = people[message.participant_id]
        content, error = render_item(
            renderer,
            RenderItem(
                message.channel,
                message.template,
                person.locale,
                participant_data(person),
                person.id,
                "Loyalty Rewards",
                "seq-test",
                "",
                message.step_id,
                message.step_id == "sms-1",
            ),
        )
        assert error is None and content is not None
        assert message.content == json.loads(content)


@pytest.mark.parametrize("workers", [0, 2])
def test_the_report_tallies_count_every_message_advance_writes(
    app: App, program: Program, workers: int
) -> None:
    # On SQLite the sequencer counts its own inserts (migration 0007); on PostgreSQL the
    # insert trigger does. Either way the tallies must equal a count of the outbox: queued
    # and skipped rows, A/B variants, several batches, forked writers, and a second advance
    # that writes nothing.
    from engine.db.models import OutboxMessage
    from engine.reports.tallies import fold_tallies, read_tallies

    _members(app, program, 9)
    with unit(app) as s:
        make_participant(s, program, at=TEST_NOW, external_id="NOPHONE", phone=None)
    steps = [
        AB_EMAIL_STEP,
        {"id": "sms-1", "channel": "sms", "template": "points_expiring"},
    ]
    run_id = launch(app, definition(steps=steps))
    advance(app, at=TEST_NOW + DAY, batch_size=3, workers=workers)
    advance(app, at=TEST_NOW + DAY, batch_size=3, workers=workers)

    def tallied() -> dict[tuple[object, ...], int]:
        with unit(app) as s:
            return {
                (t.step, t.variant, t.status, t.reason): t.messages
                for t in read_tallies(s, [run_id])
            }

    counted: dict[tuple[object, ...], int] = {}
    for m in messages(app):
        key = (m.step_id, m.variant, m.status, m.status_reason)
        counted[key] = counted.get(key, 0) + 1
    assert sum(counted.values()) == 20 and ("sms-1", None, "skipped", "no_address") in counted
    assert tallied() == counted
    with unit(app) as s:
        fold_tallies(s)
        s.execute(
            OutboxMessage.__table__.update()
            .where(OutboxMessage.step_id == "sms-1", OutboxMessage.status == "queued")
            .values(status="sent")
        )
    sent = counted.pop(("sms-1", None, "queued", None))
    assert tallied() == {**counted, ("sms-1", None, "sent", None): sent}
