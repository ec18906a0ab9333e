"""The pure rules of a case's life: transitions (property-tested), due times, the follow-up
standard's breaches, the nearest-rank percentile."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.cases.report import nearest_rank
from engine.cases.states import (
    ACTIONS,
    ACTIVE,
    CaseStateError,
    Moment,
    due_at,
    follow_up_breaches,
    transition,
)

ZONE = "America/New_York"


def ny(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour + 5, minute, tzinfo=UTC)  # EST before 8 March


@given(st.lists(st.sampled_from(ACTIONS), max_size=30))
def test_no_sequence_of_actions_closes_a_case_without_resolving_it(actions: list[str]) -> None:
    status, resolved_once = "open", False
    for action in actions:
        before = status
        try:
            status = transition(status, action)
        except CaseStateError:
            assert status == before
            continue
        if status == before:
            assert action in ("note", "assign", "call") or status in ACTIVE
            continue
        if status == "resolved":
            resolved_once = True
            assert before in ACTIVE and action == "resolve"
        if status == "closed":
            assert before == "resolved" and action == "close" and resolved_once
        if before in ("resolved", "closed") and status in ACTIVE:
            assert action == "reopen" and status == "waiting_on_us"


@pytest.mark.parametrize(
    ("status", "action", "after"),
    [
        ("open", "call", "waiting_on_us"),
        ("waiting_on_member", "member_contact", "waiting_on_us"),
        ("waiting_on_us", "wait_on_member", "waiting_on_member"),
        ("waiting_on_member", "call", "waiting_on_member"),
        ("closed", "note", "closed"),
        ("closed", "reopen", "waiting_on_us"),
    ],
)
def test_transitions(status: str, action: str, after: str) -> None:
    assert transition(status, action) == after


@pytest.mark.parametrize(
    ("status", "action", "message"),
    [
        ("open", "close", "only a resolved case is closed"),
        ("closed", "resolve", "reopen it first"),
        ("waiting_on_us", "reopen", "nothing to reopen"),
    ],
)
def test_refused_transitions_say_why(status: str, action: str, message: str) -> None:
    with pytest.raises(CaseStateError, match=message):
        transition(status, action)


def test_due_time_counts_business_days_across_a_weekend() -> None:
    # Friday 15:00 EST -> Tuesday 15:00 EDT (the clocks change on Sunday 8 March).
    assert due_at(ny(6, 15), 2, ZONE) == datetime(2026, 3, 10, 19, 0, tzinfo=UTC)
    # Opened on a Saturday: one business day is all of Monday.
    assert due_at(ny(7, 11), 1, ZONE) == datetime(2026, 3, 9, 21, 0, tzinfo=UTC)


def test_attempts_within_eight_business_hours_meet_the_standard() -> None:
    history = [
        Moment(ny(2, 14), "call", "waiting_on_us"),
        Moment(ny(3, 11), "call", "waiting_on_us"),  # 3 + 2 = 5 business hours later
        Moment(ny(3, 12), "resolve", "resolved"),
    ]
    assert follow_up_breaches(ny(2, 10), history, at=ny(6, 12), zone=ZONE) == []


def test_a_long_gap_and_too_few_attempts_are_breaches() -> None:
    history = [
        Moment(ny(3, 16), "call", "waiting_on_us"),  # Mon 10:00 + 13 business hours
        Moment(ny(3, 16, 30), "resolve", "resolved"),
    ]
    found = follow_up_breaches(ny(2, 10), history, at=ny(6, 12), zone=ZONE)
    assert [(b.kind, b.due) for b in found] == [
        ("gap", ny(3, 10)),  # due 8 business hours after opening
        ("too_few_attempts", ny(3, 16, 30)),
    ]


def test_waiting_on_the_member_stops_the_clock_and_their_answer_restarts_it() -> None:
    history = [
        Moment(ny(2, 11), "call", "waiting_on_us"),
        Moment(ny(2, 11, 5), "note", "waiting_on_member"),
        Moment(ny(5, 9), "message", "waiting_on_us"),  # the member writes on Thursday
    ]
    assert follow_up_breaches(ny(2, 10), history, at=ny(5, 16), zone=ZONE) == []
    late = follow_up_breaches(ny(2, 10), history, at=ny(6, 10), zone=ZONE)
    assert [(b.kind, b.since, b.until) for b in late] == [("gap", ny(5, 9), None)]


def test_nearest_rank() -> None:
    assert nearest_rank([], 0.5) is None
    assert nearest_rank([5.0], 0.9) == 5.0
    assert nearest_rank([float(v) for v in range(1, 11)], 0.9) == 9.0
    assert nearest_rank([4.0, 24.0, 7.0], 0.5) == 7.0
