"""Frequency caps: rolling-window counting and when a capped participant frees up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.policy import FrequencyCap, cap_frees_at, within_cap

AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def days_ago(*days: float) -> list[datetime]:
    return [AT - timedelta(days=day) for day in days]


@pytest.mark.parametrize(
    ("contacts", "maximum", "within", "frees"),
    [
        ([], 3, True, AT),
        (days_ago(1, 2), 3, True, AT),
        (days_ago(1, 2, 3), 3, False, AT + timedelta(days=4)),  # the 3-day-old one leaves
        (days_ago(1, 2, 3, 6), 3, False, AT + timedelta(days=4)),  # 6d and 3d old must leave
        (days_ago(7, 8, 30), 1, True, AT),  # exactly 7 days ago no longer counts
        (days_ago(6.5), 1, False, AT + timedelta(days=0.5)),
        ([AT + timedelta(hours=1)], 1, False, AT + timedelta(hours=1) + WEEK),  # clock skew
        (days_ago(1), 0, False, None),  # max 0: never
    ],
)
def test_cap_table(
    contacts: list[datetime], maximum: int, within: bool, frees: datetime | None
) -> None:
    assert within_cap(contacts, AT, maximum, WEEK) is within
    assert cap_frees_at(contacts, AT, maximum, WEEK) == frees


@pytest.mark.parametrize(
    ("maximum", "per", "message"), [(-1, WEEK, "max"), (1, timedelta(0), "period")]
)
def test_frequency_cap_validates(maximum: int, per: timedelta, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FrequencyCap(maximum, per)


contacts = st.lists(
    st.integers(-20 * 24 * 60, 60).map(lambda minutes: AT + timedelta(minutes=minutes)),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(
    times=contacts,
    maximum=st.integers(0, 5),
    per=st.integers(1, 14 * 24 * 60).map(lambda minutes: timedelta(minutes=minutes)),
)
def test_cap_frees_at_is_the_earliest_instant_within_the_cap(
    times: list[datetime], maximum: int, per: timedelta
) -> None:
    frees = cap_frees_at(times, AT, maximum, per)
    if frees is None:
        assert maximum == 0
        assert not within_cap(times, AT + timedelta(days=365), maximum, per)
        return
    assert frees >= AT
    assert within_cap(times, frees, maximum, per)
    if frees > AT:
        assert not within_cap(times, frees - timedelta(microseconds=1), maximum, per)
    # Brute-force count as an independent check of within_cap itself.
    counted = sum(1 for time in times if time > frees - per)
    assert counted < maximum
