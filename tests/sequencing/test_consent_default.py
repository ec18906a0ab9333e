"""A program's consent default (both databases): a member whose SMS consent is not stated is
texted when the program says yes, never when the member said no, never after an opt-out
(before launch or between queueing and sending); withdrawing the default stops what waits;
calls the same. Plan and explain say "consent by program default (set on DATE)"."""

from __future__ import annotations

from datetime import datetime

from seq_helpers import DAY, TEST_NOW, definition, enrollments, messages, unit
from sqlalchemy import select

from engine import planning, programs
from engine.app import App
from engine.calls.tasks import candidates
from engine.consent.opt_outs import suppress
from engine.db.models import CallTask, Participant, Program
from engine.sending.dispatch import dispatch
from engine.sequencing import advance
from engine.testing.fakes import RecordingChannel, make_consent, make_participant

SMS = definition(
    name="sms-default", steps=[{"id": "sms-1", "channel": "sms", "template": "points_expiring"}]
)
CALL = definition(
    name="call-default", steps=[{"id": "call-1", "channel": "call", "script": "winback"}]
)


def _members(app: App, program: Program) -> dict[str, int]:
    """QUIET stated nothing; NO said no; STOP stated nothing but texted STOP before launch;
    LATE stated nothing and texts STOP after the message was queued."""
    with unit(app) as s:
        people = {
            key: make_participant(s, program, at=TEST_NOW, external_id=key)
            for key in ("QUIET", "NO", "STOP", "LATE")
        }
        make_consent(s, people["NO"], channel="sms", status="opted_out", at=TEST_NOW)
        suppress(s, people["STOP"].phone or "", "sms", "opt_out", "test", at=TEST_NOW)
        return {key: p.id for key, p in people.items()}


def _set_default(app: App, choices: dict[str, bool], at: datetime = TEST_NOW) -> None:
    with unit(app) as s:
        programs.set_consent_default(s, "loyalty", choices, at=at)


def _texted(app: App, channel: RecordingChannel, ids: dict[str, int]) -> list[str]:
    by_phone = {}
    with unit(app) as s:
        for key, pid in ids.items():
            by_phone[s.get(Participant, pid).phone] = key  # type: ignore[union-attr]
    return sorted(by_phone[m.to] for m in channel.sent)  # type: ignore[union-attr]


def test_without_a_default_consent_not_stated_is_no(app: App, program: Program) -> None:
    _members(app, program)
    with unit(app) as s:
        report = planning.plan(s, SMS, at=TEST_NOW)
        assert report.eligible == 0
        assert planning.launch(s, SMS, at=TEST_NOW).enrolled == 0


def test_a_program_default_texts_only_members_who_stated_nothing(
    app: App, program: Program
) -> None:
    ids = _members(app, program)
    _set_default(app, {"sms": True})
    with unit(app) as s:
        result = planning.launch(s, SMS, at=TEST_NOW)
    assert result.enrolled == 2  # QUIET and LATE; NO said no, STOP is suppressed
    advance(app)
    assert len(messages(app)) == 2
    with unit(app) as s:  # LATE replies STOP between queueing and sending
        late = s.get(Participant, ids["LATE"])
        assert late is not None and late.phone
        suppress(s, late.phone, "sms", "opt_out", "test", at=TEST_NOW)
    channel = RecordingChannel("sms")
    dispatch(app, {"sms": channel}, worker="test")
    assert _texted(app, channel, ids) == ["QUIET"]
    statuses = {m.participant_id: m.status for m in messages(app)}
    assert statuses == {ids["QUIET"]: "sent", ids["LATE"]: "skipped"}


def test_withdrawing_the_default_stops_what_waits_at_send_time(app: App, program: Program) -> None:
    ids = _members(app, program)
    _set_default(app, {"sms": True})
    with unit(app) as s:
        planning.launch(s, SMS, at=TEST_NOW)
    advance(app)
    _set_default(app, {"sms": False})
    channel = RecordingChannel("sms")
    dispatch(app, {"sms": channel}, worker="test")
    assert channel.sent == []
    assert {(m.status, m.status_reason) for m in messages(app)} == {("skipped", "no_consent")}
    assert {e.participant_id for e in enrollments(app)} == {ids["QUIET"], ids["LATE"]}


def test_a_call_default_opens_and_serves_call_tasks(app: App, program: Program) -> None:
    ids = _members(app, program)
    _set_default(app, {"call": True})
    with unit(app) as s:
        assert planning.launch(s, CALL, at=TEST_NOW).enrolled == 4  # no call opt-out stated
    advance(app)
    with unit(app) as s:
        opened = set(s.scalars(select(CallTask.participant_id)))
    assert opened == set(ids.values())
    later = TEST_NOW + DAY  # Tuesday 10:00 in New York: within calling hours
    with unit(app) as s:
        served = candidates(s, at=later)  # the list's SQL read of consent
        exact = candidates(s, at=later, task_ids=[c.task.id for c in served])  # the claim's
    assert len(served) == 4 and {c.blocked for c in served + exact} == {None}
    _set_default(app, {"call": False})
    with unit(app) as s:
        exact = candidates(s, at=later, task_ids=[c.task.id for c in served])
    assert {c.blocked for c in exact} == {"no_consent"}


def test_plan_and_explain_say_consent_by_program_default(app: App, program: Program) -> None:
    _members(app, program)
    _set_default(app, {"sms": True}, at=datetime(2026, 2, 27, 12, 0, tzinfo=TEST_NOW.tzinfo))
    with unit(app) as s:
        report = planning.plan(s, SMS, at=TEST_NOW)
        quiet = planning.explain(s, SMS, "QUIET", at=TEST_NOW)
        said_no = planning.explain(s, SMS, "NO", at=TEST_NOW)
    assert report.reachable == {"sms": 2}  # QUIET and LATE, reachable by the default
    no_consent = next(e for e in report.exclusions if e.reason == "no_consent")
    assert "counts as yes for SMS (consent by program default (set on 2026-02-27))" in (
        no_consent.description
    )
    assert quiet.verdict == "would be enrolled in treatment"
    check = next(c for c in quiet.exclusions if c.reason == "no_consent")
    assert not check.excluded
    assert check.actual["sms"]["consent"] == "consent by program default (set on 2026-02-27)"
    assert said_no.verdict.startswith("excluded: no_consent: no channel left to contact (sms: ")
    assert "opted out" in said_no.verdict
