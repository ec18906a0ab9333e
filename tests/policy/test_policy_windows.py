"""Table tests for windows: legal hours, narrowing, DST edges in the zones the brief names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, timezone

import pytest

from engine.policy import (
    LEGAL_WINDOW,
    Window,
    effective_window,
    is_allowed,
    local_time_on_day,
    next_allowed,
)

NY = ["America/New_York"]


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@dataclass(frozen=True)
class SpecLike:
    """Shaped like the campaign file's TimeWindow (start, end, day names)."""

    start: time
    end: time
    days: list[str]


def test_window_of_parses_names_and_numbers() -> None:
    window = Window.of("09:00", "17:30", ["mon", "Fri", 6])
    assert window == Window(time(9), time(17, 30), frozenset({0, 4, 6}))
    assert Window.of("09:00", "10:00").days == frozenset(range(7))


@pytest.mark.parametrize(
    ("start", "end", "days", "message"),
    [
        ("9am", "10:00", None, "not a time of day"),
        ("09:00", "10:00", ["funday"], "not a weekday"),
        ("09:00", "10:00", [7], "weekday numbers"),
    ],
)
def test_window_of_rejects_bad_input(
    start: str, end: str, days: list[str | int] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Window.of(start, end, days)


def test_window_refuses_aware_times() -> None:
    with pytest.raises(ValueError, match="naive"):
        Window(time(9, tzinfo=UTC), time(10))


def test_intersect_takes_later_start_earlier_end_common_days() -> None:
    a = Window.of("07:00", "20:00", ["mon", "tue", "wed"])
    b = Window.of("09:00", "22:00", ["tue", "wed", "thu"])
    assert a.intersect(b) == Window.of("09:00", "20:00", ["tue", "wed"])
    assert Window.of("07:00", "08:00").intersect(Window.of("09:00", "10:00")).is_empty
    assert (
        Window.of("07:00", "08:00", ["mon"])
        .intersect(Window.of("07:00", "08:00", ["tue"]))
        .is_empty
    )


@pytest.mark.parametrize("channel", ["sms", "call"])
def test_sms_and_calls_get_the_legal_window_which_a_campaign_only_narrows(channel: str) -> None:
    assert effective_window(channel, None) == LEGAL_WINDOW
    wider = Window.of("06:00", "23:30")
    assert effective_window(channel, wider) == LEGAL_WINDOW
    narrower = SpecLike(time(10), time(19), ["mon", "tue"])
    assert effective_window(channel, narrower) == Window.of("10:00", "19:00", ["mon", "tue"])
    straddling = Window.of("07:00", "12:00", ["sat"])
    assert effective_window(channel, straddling) == Window.of("08:00", "12:00", ["sat"])


def test_email_has_no_legal_window_but_honours_the_campaign_window() -> None:
    assert effective_window("email", None) is None
    late = Window.of("06:00", "23:30")
    assert effective_window("email", late) == late


def test_effective_window_refuses_an_unknown_channel() -> None:
    with pytest.raises(ValueError, match="unknown channel 'fax'"):
        effective_window("fax", None)


@pytest.mark.parametrize(
    ("at", "zones", "allowed"),
    [
        (utc(2026, 3, 2, 13, 0), NY, True),  # Mon 08:00 EST: opens inclusive
        (utc(2026, 3, 2, 12, 59, 59), NY, False),  # 07:59:59 EST
        (utc(2026, 3, 3, 1, 59), NY, True),  # Mon 20:59 EST
        (utc(2026, 3, 3, 2, 0), NY, False),  # 21:00 EST: end is exclusive
        (utc(2026, 3, 9, 12, 0), NY, True),  # 08:00 EDT after spring forward
        (utc(2026, 3, 9, 11, 59), NY, False),
        (utc(2026, 3, 2, 2, 30), ["Asia/Kolkata"], True),  # 08:00 IST (+05:30)
        (utc(2026, 3, 2, 2, 29), ["Asia/Kolkata"], False),
        (utc(2026, 3, 2, 14, 0), ["America/New_York", "Asia/Kolkata"], True),
        (utc(2026, 3, 2, 16, 0), ["America/New_York", "Asia/Kolkata"], False),  # 21:30 IST
        (utc(2026, 7, 1, 7, 0), ["Europe/London"], True),  # 08:00 BST
        (utc(2026, 1, 5, 7, 0), ["Europe/London"], False),  # 07:00 GMT
    ],
)
def test_is_allowed_in_the_legal_window(at: datetime, zones: list[str], allowed: bool) -> None:
    assert is_allowed(at, zones, LEGAL_WINDOW) is allowed


def test_is_allowed_accepts_any_aware_datetime_and_no_window() -> None:
    eastern = timezone(timedelta(hours=-5))
    assert is_allowed(datetime(2026, 3, 2, 8, 0, tzinfo=eastern), NY, LEGAL_WINDOW)
    assert is_allowed(utc(2026, 3, 2, 3, 0), NY, None)


@pytest.mark.parametrize(
    ("name", "at", "zones", "window", "expected"),
    [
        ("allowed now", utc(2026, 3, 2, 15, 0), NY, LEGAL_WINDOW, utc(2026, 3, 2, 15, 0)),
        ("before opening", utc(2026, 3, 2, 11, 0), NY, LEGAL_WINDOW, utc(2026, 3, 2, 13, 0)),
        ("after closing", utc(2026, 3, 3, 2, 0), NY, LEGAL_WINDOW, utc(2026, 3, 3, 13, 0)),
        (
            "weekend skipped",
            utc(2026, 3, 7, 15, 0),  # Saturday
            NY,
            Window.of("09:00", "17:00", ["mon", "tue", "wed", "thu", "fri"]),
            utc(2026, 3, 9, 13, 0),  # Monday 09:00 EDT (DST began on Sunday)
        ),
        (
            "spring forward: 02:30 never exists, the window opens at the jump (03:00 EDT)",
            utc(2026, 3, 8, 6, 0),
            NY,
            Window.of("02:30", "04:00"),
            utc(2026, 3, 8, 7, 0),
        ),
        (
            "fall back: the repeated hour opens the window a second time",
            utc(2026, 11, 1, 5, 50),  # 01:50 EDT, just after 01:15-01:45 closed
            NY,
            Window.of("01:15", "01:45"),
            utc(2026, 11, 1, 6, 15),  # 01:15 EST
        ),
        (
            "London spring forward skips 01:00-02:00 entirely: next day",
            utc(2026, 3, 29, 0, 30),
            ["Europe/London"],
            Window.of("01:00", "01:30"),
            utc(2026, 3, 30, 0, 0),  # 01:00 BST on Monday
        ),
        (
            "Lord Howe fall back by 30 minutes repeats 01:30-02:00",
            utc(2026, 4, 4, 14, 55),  # 01:55 at +11
            ["Australia/Lord_Howe"],
            Window.of("01:40", "01:50"),
            utc(2026, 4, 4, 15, 10),  # 01:40 at +10:30
        ),
        (
            "Lord Howe spring forward by 30 minutes jumps 02:00 -> 02:30",
            utc(2026, 10, 3, 15, 0),  # 01:30 at +10:30
            ["Australia/Lord_Howe"],
            Window.of("02:10", "03:00"),
            utc(2026, 10, 3, 15, 30),  # 02:30 at +11
        ),
        (
            "Chatham falls back 03:45 -> 02:45 (+13:45 -> +12:45)",
            utc(2026, 4, 4, 13, 55),  # 03:40 at +13:45
            ["Pacific/Chatham"],
            Window.of("02:50", "03:00"),
            utc(2026, 4, 4, 14, 5),  # 02:50 at +12:45
        ),
        (
            "Kolkata half-hour offset, no DST",
            utc(2026, 3, 2, 15, 30),  # 21:00 IST
            ["Asia/Kolkata"],
            LEGAL_WINDOW,
            utc(2026, 3, 3, 2, 30),  # 08:00 IST
        ),
        (
            "two zones: the window must hold in both",
            utc(2026, 3, 2, 16, 0),
            ["America/New_York", "Asia/Kolkata"],
            LEGAL_WINDOW,
            utc(2026, 3, 3, 13, 0),  # 08:00 EST = 18:30 IST
        ),
    ],
)
def test_next_allowed(
    name: str, at: datetime, zones: list[str], window: Window, expected: datetime
) -> None:
    assert next_allowed(at, zones, window) == expected, name


@pytest.mark.parametrize(
    ("zones", "window"),
    [
        (["America/New_York", "Asia/Kolkata"], Window.of("09:00", "10:00")),  # never overlap
        (NY, Window(time(9), time(10), frozenset())),  # no weekdays
        (NY, Window.of("10:00", "09:00")),  # start after end
    ],
)
def test_next_allowed_returns_none_for_a_window_that_never_opens(
    zones: list[str], window: Window
) -> None:
    assert next_allowed(utc(2026, 3, 2, 15, 0), zones, window) is None


def test_next_allowed_respects_the_horizon() -> None:
    sunday_only = Window.of("09:00", "10:00", ["sun"])
    monday = utc(2026, 3, 2, 15, 0)
    assert next_allowed(monday, NY, sunday_only, horizon=timedelta(days=3)) is None
    assert next_allowed(monday, NY, sunday_only) == utc(2026, 3, 8, 13, 0)  # 09:00 EST


def test_next_allowed_without_a_window_is_now() -> None:
    at = utc(2026, 3, 2, 3, 0)
    assert next_allowed(at, NY, None) == at


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: next_allowed(datetime(2026, 3, 2), NY, LEGAL_WINDOW), ValueError, "naive"),
        (lambda: next_allowed(utc(2026, 3, 2), [], LEGAL_WINDOW), ValueError, "no candidate"),
        (lambda: next_allowed(utc(2026, 3, 2), "Asia/Kolkata", LEGAL_WINDOW), TypeError, "not one"),
        (lambda: is_allowed(utc(2026, 3, 2), ["Mars/Base"], LEGAL_WINDOW), Exception, "Mars"),
    ],
)
def test_misuse_is_refused(call: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("base", "days_after", "time_of_day", "zone", "expected"),
    [
        # Ordinary day: 10:00 EST.
        (utc(2026, 3, 2, 15, 0), 2, time(10), "America/New_York", utc(2026, 3, 4, 15, 0)),
        # Across spring forward the local time is kept, the UTC instant moves by an hour.
        (utc(2026, 3, 7, 15, 0), 2, time(10), "America/New_York", utc(2026, 3, 9, 14, 0)),
        # The local date of the base counts, not the UTC date (23:00 EST is already Tue UTC).
        (utc(2026, 3, 3, 4, 0), 1, time(10), "America/New_York", utc(2026, 3, 3, 15, 0)),
        # 02:30 does not exist on 2026-03-08 in New York: the jump to 03:00 EDT.
        (utc(2026, 3, 7, 15, 0), 1, time(2, 30), "America/New_York", utc(2026, 3, 8, 7, 0)),
        # 01:30 happens twice on 2026-11-01: the first one (EDT).
        (utc(2026, 10, 31, 15, 0), 1, time(1, 30), "America/New_York", utc(2026, 11, 1, 5, 30)),
        # London: 01:30 skipped on 2026-03-29 -> 02:00 BST = 01:00 UTC.
        (utc(2026, 3, 28, 12, 0), 1, time(1, 30), "Europe/London", utc(2026, 3, 29, 1, 0)),
        # Lord Howe: 02:15 skipped (02:00 -> 02:30) on 2026-10-04 -> the jump, 15:30 UTC.
        (utc(2026, 10, 3, 0, 0), 1, time(2, 15), "Australia/Lord_Howe", utc(2026, 10, 3, 15, 30)),
        # Lord Howe: 01:45 repeated on 2026-04-05 -> the first (+11).
        (utc(2026, 4, 4, 0, 0), 1, time(1, 45), "Australia/Lord_Howe", utc(2026, 4, 4, 14, 45)),
        # Kolkata: +05:30, 10:00 IST.
        (utc(2026, 3, 2, 0, 0), 0, time(10), "Asia/Kolkata", utc(2026, 3, 2, 4, 30)),
        # Chatham: 10:00 at +13:45 (DST) in March.
        (utc(2026, 3, 2, 0, 0), 0, time(10), "Pacific/Chatham", utc(2026, 3, 1, 20, 15)),
        # Apia skipped 2011-12-30 entirely: the first instant after, 00:00 on the 31st (+14).
        (utc(2011, 12, 29, 12, 0), 1, time(10), "Pacific/Apia", utc(2011, 12, 30, 10, 0)),
    ],
)
def test_local_time_on_day(
    base: datetime, days_after: int, time_of_day: time, zone: str, expected: datetime
) -> None:
    assert local_time_on_day(base, days_after, time_of_day, zone) == expected


def test_local_time_on_day_refuses_an_aware_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        local_time_on_day(utc(2026, 3, 2), 0, time(10, tzinfo=UTC), "UTC")
