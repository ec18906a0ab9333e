"""Logging calls: every disposition's required fields and effects, recycling and the
8-business-hour / 2-attempt standard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from calls_helpers import (
    TEST_NOW,
    World,
    campaign_source,
    make_run,
    make_world,
    task_row,
    unit,
)
from sqlalchemy import func, select

from engine.app import App
from engine.calls.dispositions import STANDARD, DispositionError, DispositionSet
from engine.calls.log import CallInput, log_call
from engine.calls.tasks import claim_next
from engine.db.models import (
    ActivityEvent,
    CallerLogEntry,
    CallTask,
    Contact,
    Conversion,
    Enrollment,
    Suppression,
)
from engine.errors import InputError

DISPOSITIONS = DispositionSet.standard()
# A complete, valid entry for every standard disposition.
VALID: dict[str, dict[str, Any]] = {
    "CONVERTED": {"fields": {"action": "renewed", "amount": "49.90"}, "verified": True},
    "PROMISED": {"fields": {"action": "renew", "by": "2026-03-09"}, "verified": True},
    "NOT_INTERESTED": {"fields": {"reason": "moving abroad"}, "verified": True},
    "CALLBACK": {"fields": {"callback_at": "2026-03-03T14:00:00-05:00"}, "verified": True},
    "VOICEMAIL": {"fields": {}},
    "NO_ANSWER": {"fields": {}},
    "BUSY": {"fields": {}},
    "WRONG_NUMBER": {"fields": {}},
    "DISCONNECTED": {"fields": {}},
    "DO_NOT_CALL": {"fields": {}, "verified": False},
    "ESCALATED": {"fields": {"team": "escalations", "reason": "billing dispute"}, "verified": True},
    "COMPLAINT": {
        "fields": {"category": "billing", "summary": "charged twice"},
        "verified": True,
    },
    "VERIFICATION_FAILED": {"fields": {"reason": "wrong member number"}},
}


def test_every_standard_disposition_has_a_valid_example() -> None:
    assert set(VALID) == {d.code for d in STANDARD}


def claimed(app: App, w: World, *, agent: str = "ana", **member: Any) -> int:
    if agent not in _agents(app):
        w.agent(agent)
    t = w.task(w.member(**member))
    with unit(app) as s:
        c = claim_next(s, agent, at=TEST_NOW)
    assert c is not None and c.task_id == t
    return t


def _agents(app: App) -> set[str]:
    from engine.db.models import Agent

    with app.sessions() as s:
        return set(s.scalars(select(Agent.login)))


def log(
    app: App,
    task: int,
    code: str,
    *,
    at: datetime = TEST_NOW + timedelta(minutes=7),
    agent: str = "ana",
    **kw: Any,
):  # type: ignore[no-untyped-def]
    spec = {**VALID.get(code, {}), **kw}
    with unit(app) as s:
        return log_call(
            s,
            CallInput(
                task, agent, code, spec.get("fields", {}), spec.get("verified"), spec.get("notes")
            ),
            DISPOSITIONS,
            at=at,
        )


@pytest.mark.parametrize("code", sorted(VALID))
def test_each_required_field_is_named_when_missing(app: App, code: str) -> None:
    w = make_world(app)
    task = claimed(app, w)
    disposition = DISPOSITIONS.get(code)
    for spec in disposition.fields:
        if not spec.required:
            continue
        fields = {k: v for k, v in VALID[code]["fields"].items() if k != spec.name}
        with pytest.raises(DispositionError, match=rf"{code} requires field {spec.name}\b"):
            log(app, task, code, fields=fields)
    if disposition.human_contact and disposition.asks_verified:
        with pytest.raises(DispositionError, match=r"requires field verified"):
            log(app, task, code, verified=None)
    # Nothing was written by the refusals; the valid entry goes through.
    with app.sessions() as s:
        assert s.scalar(select(func.count()).select_from(CallerLogEntry)) == 0
    result = log(app, task, code)
    assert result.disposition == code
    assert result.record.startswith(f"{code} - ")
    assert result.handle_seconds == 7 * 60
    with app.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Contact)) == 1


def test_values_outside_the_allowed_ones_are_refused(app: App) -> None:
    w = make_world(app)
    task = claimed(app, w)
    with pytest.raises(DispositionError, match="category: 'weather' is not allowed"):
        log(app, task, "COMPLAINT", fields={"category": "weather", "summary": "rain"})
    with pytest.raises(DispositionError, match="has no field 'mood'"):
        log(app, task, "NO_ANSWER", fields={"mood": "grumpy"})
    with pytest.raises(DispositionError, match="not in the future"):
        log(app, task, "CALLBACK", fields={"callback_at": "2026-03-01T10:00:00+00:00"})
    with pytest.raises(DispositionError, match="verified=yes"):
        log(app, task, "CONVERTED", verified=False)
    with pytest.raises(DispositionError, match="unknown disposition 'MAYBE'"):
        log(app, task, "MAYBE")


def test_log_refused_on_someone_elses_live_claim_and_on_a_closed_task(app: App) -> None:
    w = make_world(app)
    task = claimed(app, w, agent="ana")
    w.agent("ben")
    with pytest.raises(InputError, match="claimed by ana, not ben"):
        log(app, task, "NO_ANSWER", agent="ben")
    log(app, task, "NOT_INTERESTED")
    with pytest.raises(InputError, match="is closed"):
        log(app, task, "NO_ANSWER")


def test_converted_records_a_conversion_attributed_to_the_call(app: App) -> None:
    w = make_world(app)
    task = claimed(app, w)
    result = log(app, task, "CONVERTED")
    assert result.conversions == 1
    with app.sessions() as s:
        event = s.scalar(select(ActivityEvent).where(ActivityEvent.source == "call"))
        assert event is not None
        assert (event.type, event.reference) == ("renewal", f"call:{result.log_id}")
        conversion = s.scalar(select(Conversion))
        assert conversion is not None and conversion.event_id == event.id
        t = s.get(CallTask, task)
        assert t is not None
        enrollment = s.get(Enrollment, t.enrollment_id)
        assert enrollment is not None and enrollment.state == "converted"
    row = task_row(app, task)
    assert (row.status, row.outcome, row.reached_at) == ("closed", "CONVERTED", result_at())


def result_at() -> datetime:
    return TEST_NOW + timedelta(minutes=7)


def test_do_not_call_suppresses_calls_at_once_in_every_campaign(app: App) -> None:
    w = make_world(app)
    task = claimed(app, w, phone="+12025550777")
    with app.sessions() as s:
        pid = s.get(CallTask, task).participant_id  # type: ignore[union-attr]
    second = make_run(app, w.program_id, campaign_source("other-calls"))
    other = w.task(pid, run_id=second)  # the same person in another campaign
    result = log(app, task, "DO_NOT_CALL")
    assert result.closed_tasks == 1
    assert task_row(app, other).status == "closed"
    with app.sessions() as s:
        entry = s.scalar(select(Suppression).where(Suppression.address == "+12025550777"))
        assert entry is not None and (entry.channel, entry.reason) == ("call", "do_not_call")
    # A new task for that number is never served.
    third = make_run(app, w.program_id, campaign_source("third-calls"))
    w.task(pid, run_id=third)
    with unit(app) as s:
        assert claim_next(s, "ana", at=TEST_NOW + timedelta(hours=1)) is None


@pytest.mark.parametrize("code", ["WRONG_NUMBER", "DISCONNECTED"])
def test_wrong_or_disconnected_number_is_marked_invalid(app: App, code: str) -> None:
    w = make_world(app)
    task = claimed(app, w, phone="+12025550888")
    result = log(app, task, code)
    assert result.task_status == "closed"
    assert task_row(app, task).reached_at is None
    with app.sessions() as s:
        rows = s.execute(
            select(Suppression.channel, Suppression.reason).where(
                Suppression.address == "+12025550888"
            )
        ).all()
    assert sorted(rows) == [("call", "invalid"), ("sms", "invalid")]


@pytest.mark.parametrize("who", ["anyone", "agent"])
def test_callback_creates_a_task_due_then(app: App, who: str) -> None:
    w = make_world(app)
    task = claimed(app, w)
    w.agent("ben")
    fields = {"callback_at": "2026-03-03T14:00:00-05:00", "who": who}
    result = log(app, task, "CALLBACK", fields=fields)
    assert task_row(app, task).status == "closed"
    cb = task_row(app, result.created_task_id)  # type: ignore[arg-type]
    due = datetime(2026, 3, 3, 19, 0, tzinfo=UTC)
    assert (cb.kind, cb.due_at, cb.parent_task_id, cb.source_step_id) == (
        "callback",
        due,
        task,
        "call-1",
    )
    assert cb.assigned_agent == ("ana" if who == "agent" else None)
    with unit(app) as s:
        assert claim_next(s, "ben", at=due - timedelta(minutes=1)) is None  # not due yet
    with unit(app) as s:
        got = claim_next(s, "ben", at=due)
    assert (got is not None) == (who == "anyone")
    if who == "agent":
        with unit(app) as s:
            mine = claim_next(s, "ana", at=due)
        assert mine is not None and mine.task_id == cb.id


def test_escalated_moves_the_task_to_that_teams_queue(app: App) -> None:
    w = make_world(app)
    task = claimed(app, w)
    w.agent("esc", teams=("escalations",))
    log(app, task, "ESCALATED")
    row = task_row(app, task)
    assert (row.status, row.team) == ("open", "escalations")
    with unit(app) as s:
        assert claim_next(s, "ana", at=TEST_NOW + timedelta(minutes=8)) is None
    with unit(app) as s:
        got = claim_next(s, "esc", at=TEST_NOW + timedelta(minutes=8))
    assert got is not None and got.task_id == task


def test_promised_creates_a_follow_up(app: App) -> None:
    w = make_world(app)
    task = claimed(app, w)
    result = log(app, task, "PROMISED")
    follow = task_row(app, result.created_task_id)  # type: ignore[arg-type]
    assert (follow.kind, follow.due_at) == ("follow_up", result_at() + timedelta(days=2))
    assert task_row(app, task).reached_at == result_at()


@pytest.mark.parametrize(
    ("code", "delay"), [("BUSY", timedelta(minutes=30)), ("NO_ANSWER", timedelta(hours=4))]
)
def test_no_contact_outcomes_recycle_after_their_delay(
    app: App, code: str, delay: timedelta
) -> None:
    w = make_world(app)
    task = claimed(app, w)
    log(app, task, code)
    row = task_row(app, task)
    assert (row.status, row.attempts, row.due_at) == ("open", 1, result_at() + delay)
    assert row.reached_at is None


def test_recycle_never_later_than_8_business_hours(app: App) -> None:
    # VOICEMAIL recycles after 24h, but Monday 15:00 New York + 8 business hours is Tuesday
    # 15:00 (2h Monday, 6h Tuesday from 09:00).
    w = make_world(app)
    task = claimed(app, w)
    at = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)  # Monday 15:00 EST
    log(app, task, "VOICEMAIL", at=at)
    assert task_row(app, task).due_at == datetime(2026, 3, 3, 20, 0, tzinfo=UTC)


def test_friday_evening_attempt_follows_up_monday(app: App) -> None:
    w = make_world(app)
    task = claimed(app, w)
    at = datetime(2026, 3, 6, 23, 0, tzinfo=UTC)  # Friday 18:00 EST: after business hours
    log(app, task, "VOICEMAIL", at=at)
    # 24h recycle would be Saturday; 8 business hours from Friday evening is Monday 17:00.
    assert task_row(app, task).due_at == datetime(2026, 3, 7, 23, 0, tzinfo=UTC)
    with unit(app) as s:
        assert claim_next(s, "ana", at=datetime(2026, 3, 7, 23, 0, tzinfo=UTC)) is not None


def test_closed_as_unreachable_after_max_attempts_but_never_before_two(app: App) -> None:
    w = make_world(app)
    w.agent("ana")
    task = w.task(w.member(), max_attempts=1)
    at = TEST_NOW
    outcomes = []
    for _ in range(3):
        with unit(app) as s:
            c = claim_next(s, "ana", at=at)
        if c is None:
            break
        at += timedelta(minutes=5)
        outcomes.append(log(app, task, "NO_ANSWER", at=at).task_status)
        at += timedelta(hours=5)
    # max_attempts 1, but the standard's minimum of 2 attempts keeps it open once.
    assert outcomes == ["open", "closed"]
    row = task_row(app, task)
    assert row.attempts == 2 and row.close_reason.startswith("unreachable after 2 attempts")


def test_max_attempts_from_the_task(app: App) -> None:
    w = make_world(app)
    w.agent("ana")
    task = w.task(w.member(), max_attempts=3)
    at = TEST_NOW
    statuses = []
    for _ in range(3):
        with unit(app) as s:
            assert claim_next(s, "ana", at=at) is not None
        at += timedelta(minutes=1)
        statuses.append(log(app, task, "BUSY", at=at).task_status)
        at += timedelta(hours=1)
    assert statuses == ["open", "open", "closed"]


def test_a_campaigns_own_follow_up_standard(app: App) -> None:
    # follow_up: within 2 business hours, at least 3 attempts (the step allows only 1).
    w = make_world(app, follow_up={"within": "2h", "min_attempts": 3})
    w.agent("ana")
    task = w.task(w.member(), max_attempts=1)
    at = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)  # Monday 15:00 New York
    statuses = []
    for _ in range(4):
        if task_row(app, task).status == "closed":
            break
        for _hour in range(16):  # the next time it is callable (the window shuts at 21:00)
            with unit(app) as s:
                if claim_next(s, "ana", at=at) is not None:
                    break
            at += timedelta(hours=1)
        result = log(app, task, "NO_ANSWER", at=at)
        statuses.append(result.task_status)
        if len(statuses) == 1:
            # NO_ANSWER recycles after 4h, but 2 business hours after Monday 15:00 is 17:00.
            assert result.next_due_at == datetime(2026, 3, 2, 22, 0, tzinfo=UTC)
        at = task_row(app, task).due_at
    assert statuses == ["open", "open", "closed"]
    assert task_row(app, task).close_reason.startswith("unreachable after 3 attempts")
