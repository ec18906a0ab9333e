"""Business hours and the follow-up standard (pure), checked by hand."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from calls_helpers import campaign_source
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.calls.standards import (
    DEFAULT_STANDARD,
    FollowUpStandard,
    _bounds_of,
    add_business_hours,
    business_hours_between,
    recycle_due,
    schedule_retry,
    standard_deadline,
    standard_for,
)
from engine.definitions.loader import parse_definition
from engine.errors import DefinitionError, DefinitionErrors

NY = "America/New_York"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "hours", "expected"),
    [
        (utc(2026, 3, 2, 15), 8, utc(2026, 3, 3, 15)),  # Mon 10:00 EST -> Tue 10:00
        (utc(2026, 3, 2, 11), 8, utc(2026, 3, 2, 22)),  # before opening: a whole day, 17:00
        (utc(2026, 3, 6, 21), 8, utc(2026, 3, 9, 20)),  # Fri 16:00 -> Mon 16:00 (1h + 7h)
        (utc(2026, 3, 7, 15), 2, utc(2026, 3, 9, 15)),  # Saturday -> Monday 11:00 EDT (DST)
        # Across the spring-forward weekend (8 March): Friday 15:00 EST + 8h = Monday 15:00
        # EDT, which is 19:00 UTC (the offset changed from -5 to -4).
        (utc(2026, 3, 6, 20), 8, utc(2026, 3, 9, 19)),
    ],
)
def test_add_business_hours(start: datetime, hours: float, expected: datetime) -> None:
    assert add_business_hours(start, hours, NY) == expected
    assert business_hours_between(start, expected, NY) == pytest.approx(hours)


def test_business_hours_between_skips_nights_and_weekends() -> None:
    assert business_hours_between(utc(2026, 3, 6, 22), utc(2026, 3, 9, 13), NY) == 0
    assert business_hours_between(utc(2026, 3, 6, 22), utc(2026, 3, 9, 14), NY) == 1
    assert business_hours_between(utc(2026, 3, 2, 15), utc(2026, 3, 2, 14), NY) == 0
    assert business_hours_between(utc(2026, 3, 2, 0), utc(2026, 3, 9, 0), NY) == 40


def test_recycle_due_is_the_delay_capped_by_the_standard() -> None:
    at = utc(2026, 3, 2, 15)
    assert recycle_due(at, timedelta(hours=4), DEFAULT_STANDARD, NY) == at + timedelta(hours=4)
    assert recycle_due(at, timedelta(days=3), DEFAULT_STANDARD, NY) == utc(2026, 3, 3, 15)
    strict = FollowUpStandard(within_business_hours=2, min_attempts=2)
    assert recycle_due(at, timedelta(hours=4), strict, NY) == utc(2026, 3, 2, 17)


def test_min_attempts_and_campaign_overrides() -> None:
    assert DEFAULT_STANDARD.effective_max_attempts(1) == 2
    assert DEFAULT_STANDARD.effective_max_attempts(5) == 5
    assert standard_for(None) == DEFAULT_STANDARD
    custom = SimpleNamespace(follow_up=SimpleNamespace(within=timedelta(hours=4), min_attempts=3))
    assert standard_for(custom) == FollowUpStandard(4.0, 3)


def test_a_campaign_sets_its_standard_and_calling_plan_in_its_definition() -> None:
    source = campaign_source(
        follow_up={"within": "4h", "min_attempts": 3},
        calling_plan={"daily": 50, "monthly": 900},
    )
    definition = parse_definition(source, "renew-calls.yaml").definition
    assert standard_for(definition) == FollowUpStandard(4.0, 3)
    assert definition.calling_plan is not None
    plan = definition.calling_plan
    assert (plan.daily, plan.weekly, plan.monthly) == (50, None, 900)
    # Left out, the default standard applies.
    assert standard_for(parse_definition(campaign_source(), "x.yaml").definition) == (
        DEFAULT_STANDARD
    )


CALL_STEP = {"id": "call-1", "channel": "call", "script": "renewal_due"}
EMAIL_STEP = {"id": "email-1", "channel": "email", "template": "renewal"}


@pytest.mark.parametrize(
    ("extra", "step", "message"),
    [
        ({"follow_up": {"within": "0h"}}, CALL_STEP, "must be longer than 0"),
        ({"follow_up": {"min_attempts": 0}}, CALL_STEP, "min_attempts"),
        ({"calling_plan": {}}, CALL_STEP, "at least one of daily, weekly, monthly"),
        ({"calling_plan": {"daily": -1}}, CALL_STEP, "daily"),
        ({"follow_up": {"within": "8h"}}, EMAIL_STEP, "follow_up is about call steps"),
        ({"calling_plan": {"daily": 5}}, EMAIL_STEP, "calling_plan is about call steps"),
    ],
)
def test_bad_follow_up_and_calling_plan_blocks_are_refused(
    extra: dict[str, Any], step: dict[str, Any], message: str
) -> None:
    data = {
        "name": "x",
        "program": "loyalty",
        "audience": {"field": "status", "eq": "active"},
        "goal": {"events": ["renewal"], "window": "30d"},
        **extra,
        "steps": [step],
    }
    with pytest.raises((DefinitionError, DefinitionErrors), match=message):
        parse_definition(yaml.safe_dump(data, sort_keys=False), "x.yaml")


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31)),
    st.sampled_from([NY, "Asia/Kolkata", "Australia/Lord_Howe", "Europe/London"]),
    st.sampled_from([None, "US", "GB"]),
    st.sampled_from([0.5, 8.0, 30.0]),
)
def test_a_retry_deadline_is_the_standard_deadline(
    at: datetime, zone: str, holidays: str | None, hours: float
) -> None:
    """schedule_retry works its deadline out from its limit: the same as standard_deadline,
    and the business hours of a day are the same cached or not (#20)."""
    at = at.replace(tzinfo=UTC)
    standard = FollowUpStandard(hours, 2)
    retry = schedule_retry(at, timedelta(hours=4), standard, zone, lambda t: t, holidays=holidays)
    assert retry.deadline == standard_deadline(at, standard, zone, holidays=holidays)
    tz = ZoneInfo(zone)
    day = at.astimezone(tz).date()
    assert _bounds_of(day, tz) == (
        datetime.combine(day, time(9), tzinfo=tz).astimezone(UTC),
        datetime.combine(day, time(17), tzinfo=tz).astimezone(UTC),
    )
