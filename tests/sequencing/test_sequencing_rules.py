"""The pure rules of sequencing: step timing in local time across DST, conditions, exits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.consent.wording import REASON_WORDS
from engine.definitions.schema import Step
from engine.sequencing import Facts, MessageState, exit_reason, plan_enrollment, step_due

NY = ("America/New_York",)


def step(**fields: Any) -> Step:
    data: dict[str, Any] = {"id": "s", "channel": "email", "template": "t"}
    data.update(fields)
    if data["channel"] == "call":
        del data["template"]
    return Step.model_validate(data)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(zone: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("base", "fields", "zones", "expected"),
    [
        # plain delays are exact durations
        (utc(2026, 3, 2, 15), {}, NY, utc(2026, 3, 2, 15)),
        (utc(2026, 3, 2, 15), {"delay": "36h"}, NY, utc(2026, 3, 4, 3)),
        # "day 3 at 10:00": the local date of base+3d, at 10:00 local (EST, UTC-5)
        (utc(2026, 3, 2, 20), {"delay": "3d", "at": "10:00"}, NY, utc(2026, 3, 5, 15)),
        # across spring-forward (2026-03-08): 10:00 EDT is 14:00 UTC
        (utc(2026, 3, 6, 15), {"delay": "3d", "at": "10:00"}, NY, utc(2026, 3, 9, 14)),
        # a wall time that does not exist that night: the instant the clock jumps over it
        (utc(2026, 3, 7, 12), {"delay": "1d", "at": "02:30"}, NY, utc(2026, 3, 8, 7)),
        # across fall-back (2026-11-01): 10:00 EST again
        (utc(2026, 10, 30, 14), {"delay": "3d", "at": "10:00"}, NY, utc(2026, 11, 2, 15)),
        # the repeated hour of fall-back: its first occurrence (EDT)
        (utc(2026, 10, 31, 12), {"delay": "1d", "at": "01:30"}, NY, utc(2026, 11, 1, 5, 30)),
        # "0d at 09:30" when the base is later that day: tomorrow 09:30
        (utc(2026, 3, 2, 20), {"at": "09:30"}, NY, utc(2026, 3, 3, 14, 30)),
        # ... and earlier that day: today 09:30
        (utc(2026, 3, 2, 12), {"at": "09:30"}, NY, utc(2026, 3, 2, 14, 30)),
        # recipient zone: Tokyo (UTC+9, no DST)
        (utc(2026, 3, 2, 15), {"delay": "1d", "at": "10:00"}, ("Asia/Tokyo",), utc(2026, 3, 4, 1)),
        # several candidate zones: the latest instant, so nobody sees it before 10:00
        (
            utc(2026, 3, 2, 12),
            {"at": "10:00"},
            ("America/New_York", "America/Los_Angeles"),
            utc(2026, 3, 2, 18),
        ),
    ],
)
def test_step_due(
    base: datetime, fields: dict[str, Any], zones: tuple[str, ...], expected: datetime
) -> None:
    assert step_due(base, step(**fields), lambda: zones) == expected


def test_zones_are_only_resolved_for_steps_with_a_time_of_day() -> None:
    def explode() -> tuple[str, ...]:
        raise AssertionError("resolved zones for a step without at")

    assert step_due(utc(2026, 1, 1), step(delay="1d"), explode) == utc(2026, 1, 2)


@settings(max_examples=300, deadline=None)
@given(
    base=st.datetimes(
        min_value=datetime(2025, 1, 1),
        max_value=datetime(2028, 12, 31),
        timezones=st.just(UTC),
    ),
    days=st.integers(min_value=0, max_value=20),
    hour=st.integers(min_value=0, max_value=23),
    minute=st.sampled_from([0, 15, 30, 45]),
    zone=st.sampled_from(
        ["America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kolkata", "UTC"]
    ),
)
def test_at_steps_land_on_that_wall_time_never_before_the_base(
    base: datetime, days: int, hour: int, minute: int, zone: str
) -> None:
    due = step_due(base, step(delay=f"{days}d", at=f"{hour:02d}:{minute:02d}"), lambda: (zone,))
    assert due >= base
    wall = due.astimezone(ZoneInfo(zone))
    # On the wall clock: that time, or the first instant after a DST gap swallowed it.
    if (wall.hour, wall.minute) != (hour, minute):
        gap_end = wall - timedelta(seconds=1)
        assert gap_end.utcoffset() != wall.utcoffset()
    # On the local date of base + delay, or the next one when that would be before the base.
    target = (base + timedelta(days=days)).astimezone(ZoneInfo(zone)).date()
    assert wall.date() in (target, target + timedelta(days=1))
    if wall.date() != target:
        assert days == 0


STEPS = [
    step(id="email-1"),
    step(id="sms-1", channel="sms", delay="2d", condition="not_converted"),
    step(id="call-1", channel="call", script="c", delay="1d"),
]


def plan(facts: Facts, at: datetime, index: int = 0, next_at: datetime | None = None) -> Any:
    return plan_enrollment(
        STEPS,
        enrolled_at=utc(2026, 3, 2),
        next_step_index=index,
        next_action_at=next_at or utc(2026, 3, 2),
        facts=facts,
        at=at,
        zones=lambda: NY,
    )


def test_plan_walks_due_steps_and_stops_at_the_next() -> None:
    outcome = plan(Facts(), utc(2026, 3, 4))
    assert [a.step_index for a in outcome.actions] == [0, 1]
    assert (outcome.next_step_index, outcome.next_action_at, outcome.state) == (
        2,
        utc(2026, 3, 5),
        "active",
    )
    done = plan(Facts(), utc(2026, 3, 5), index=2, next_at=utc(2026, 3, 5))
    assert [a.step_index for a in done.actions] == [2] and done.state == "completed"


def test_a_failing_condition_skips_the_step_and_moves_on() -> None:
    outcome = plan(Facts(converted=True), utc(2026, 3, 10), index=1, next_at=utc(2026, 3, 4))
    assert [a.step_index for a in outcome.actions] == [2]
    assert outcome.skipped == ((1, "not_converted"),) and outcome.state == "completed"


@pytest.mark.parametrize(
    ("closed", "exits"),
    [
        ({}, False),
        ({"email": "suppressed"}, False),  # sms and call still open
        ({"email": "suppressed", "sms": "opted_out", "call": "no_consent"}, True),
        ({"email": "no_address", "sms": "no_address", "call": "no_address"}, False),
        ({"email": "no_address", "sms": "suppressed", "call": "suppressed"}, True),
    ],
)
def test_exit_when_every_remaining_channel_is_closed(closed: dict[str, str], exits: bool) -> None:
    reason = exit_reason(STEPS, Facts(closed=closed))
    assert (reason is not None) == exits
    if reason is not None:
        for channel, why in closed.items():  # the gate's reasons, said in words
            assert f"{channel}: {REASON_WORDS[why]}" in reason


def test_only_the_remaining_steps_channels_count() -> None:
    facts = Facts(closed={"email": "opted_out", "sms": "suppressed"})
    outcome = plan(facts, utc(2026, 3, 2))
    # email and sms are closed but the call step is still ahead: the email step is queued (the
    # dispatcher's gate skips it), nothing exits.
    assert outcome.state == "active" and [a.step_index for a in outcome.actions] == [0]
    both = Facts(closed={"email": "opted_out", "sms": "suppressed", "call": "no_consent"})
    gone = plan(both, utc(2026, 3, 2))
    assert gone.state == "exited" and gone.actions == () and gone.next_action_at is None
    # Consent never stated is not an opt-out, and the reason says how to state it.
    assert gone.exit_reason is not None and "call: consent not stated" in gone.exit_reason
    assert "consent_call column" in gone.exit_reason


# --------------------------------------------------------------------------- spacing (#21)

PAIR = [step(id="email-1"), step(id="sms-1", channel="sms", delay="2d")]


def _walk(
    steps: list[Step], facts: Facts, at: datetime, index: int = 0, next_at: Any = None
) -> Any:
    return plan_enrollment(
        steps,
        enrolled_at=utc(2026, 3, 2),
        next_step_index=index,
        next_action_at=next_at or utc(2026, 3, 2),
        facts=facts,
        at=at,
        zones=lambda: NY,
    )


def test_a_walk_after_a_pause_sends_one_step_and_spaces_the_next() -> None:
    late = utc(2026, 4, 6)
    outcome = _walk(PAIR, Facts(), late)
    assert [a.step_index for a in outcome.actions] == [0]
    assert (outcome.next_step_index, outcome.next_action_at) == (1, late + timedelta(days=2))


def test_steps_at_one_instant_still_go_together_when_late() -> None:
    together = [step(id="email-1"), step(id="sms-1", channel="sms")]
    outcome = _walk(together, Facts(), utc(2026, 3, 3))
    assert [a.step_index for a in outcome.actions] == [0, 1]


def test_a_previous_message_sent_late_moves_the_next_step() -> None:
    sent = utc(2026, 3, 2, 18)  # three hours after its due time
    facts = Facts(messages={0: MessageState(False, sent, utc(2026, 3, 2))})
    waiting = _walk(PAIR, facts, utc(2026, 3, 4), index=1, next_at=utc(2026, 3, 4))
    assert waiting.actions == () and waiting.next_action_at == sent + timedelta(days=2)
    # Sent within the hour's slack: the step keeps its own time.
    facts = Facts(messages={0: MessageState(False, utc(2026, 3, 2, 0, 30), utc(2026, 3, 2))})
    taken = _walk(PAIR, facts, utc(2026, 3, 4), index=1, next_at=utc(2026, 3, 4))
    assert [a.step_index for a in taken.actions] == [1]


def test_a_queued_previous_message_does_not_stop_the_sequence() -> None:
    # The dispatcher's gate keeps that spacing (engine.sending.deadlines.send_time_refusals).
    facts = Facts(messages={0: MessageState(True, None, utc(2026, 3, 2))})
    taken = _walk(PAIR, facts, utc(2026, 3, 4), index=1, next_at=utc(2026, 3, 4))
    assert [a.step_index for a in taken.actions] == [1]


def test_a_deadline_passed_makes_the_action_expired() -> None:
    outcome = plan_enrollment(
        PAIR[:1],
        enrolled_at=utc(2026, 3, 2),
        next_step_index=0,
        next_action_at=utc(2026, 3, 2),
        facts=Facts(),
        at=utc(2026, 3, 6),
        zones=lambda: NY,
        deadline=lambda s, due: due + timedelta(days=3),
    )
    (action,) = outcome.actions
    assert action.expired and action.expires_at == utc(2026, 3, 5)
