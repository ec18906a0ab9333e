"""Property tests for the windows across random zones, DST transitions and campaign windows.

The oracle is a brute-force minute scan of the wall clock (tests/policy/policy_helpers.py),
independent of the code under test."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from policy_helpers import (
    ALL_ZONES,
    LEGAL,
    MINUTE,
    ceil_minute,
    inside,
    inside_all,
    transitions,
)

from engine.policy import (
    ConsentRules,
    FrequencyCap,
    ParticipantFacts,
    SendNow,
    Skip,
    WaitUntil,
    Window,
    decide,
    effective_window,
    gate,
    is_allowed,
    local_time_on_day,
    next_allowed,
    within_cap,
)

HORIZON = timedelta(days=9)  # shorter than the default so the brute-force oracle stays cheap
NAMED = [
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Pacific/Chatham",
]
zone_names = st.one_of(st.sampled_from(NAMED), st.sampled_from(ALL_ZONES))
SETTINGS = settings(max_examples=200, deadline=None)


@st.composite
def instants(draw: st.DrawFn, zone: str) -> datetime:
    """An instant in 1995-2037, often right at or near one of ``zone``'s offset changes."""
    year = draw(st.integers(1995, 2037))
    changes = transitions(zone, year)
    if changes and draw(st.integers(0, 3)) > 0:
        change = draw(st.sampled_from(changes))
        shift = draw(
            st.one_of(
                st.just(timedelta(0)),
                st.integers(-26 * 60, 26 * 60).map(lambda m: timedelta(minutes=m)),
                # Shortly before: the next opening lies across the change.
                st.integers(-12 * 60, -1).map(lambda m: timedelta(minutes=m)),
                st.integers(-7200, 7200).map(lambda s: timedelta(seconds=s)),
            )
        )
        event("at a transition" if not shift else "near a transition")
        return change + shift
    return draw(st.datetimes(datetime(year, 1, 1), datetime(year, 12, 31), timezones=st.just(UTC)))


@st.composite
def windows(draw: st.DrawFn) -> Window:
    start = draw(st.integers(0, 23 * 60 + 58))
    # Mostly long windows, so that several zones often share some hours; some short ones.
    length = draw(
        st.one_of(st.integers(1, 180), st.integers(180, 24 * 60), st.integers(600, 24 * 60))
    )
    end = min(start + length, 23 * 60 + 59)
    days = draw(
        st.one_of(
            st.just(frozenset(range(7))),
            st.frozensets(st.integers(0, 6), min_size=1),
            st.frozensets(st.integers(0, 6), min_size=4),
        )
    )
    return Window(time(*divmod(start, 60)), time(*divmod(end, 60)), days)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[datetime, list[str], str, Window | None]:
    zones = draw(
        st.one_of(
            st.lists(zone_names, min_size=1, max_size=1),
            st.lists(zone_names, min_size=1, max_size=3, unique=True),
        )
    )
    at = draw(instants(zones[0]))
    channel = draw(st.sampled_from(["sms", "call", "email"]))
    campaign = draw(st.one_of(st.none(), windows()))
    return at, zones, channel, campaign


@SETTINGS
@given(scenarios())
def test_next_allowed_is_inside_the_window_and_the_earliest(
    scenario: tuple[datetime, list[str], str, Window | None],
) -> None:
    at, zones, channel, campaign = scenario
    window = effective_window(channel, campaign)
    result = next_allowed(at, zones, window, horizon=HORIZON)
    event("no window" if window is None else "none" if result is None else "found")
    if window is None:
        assert result == at
        return
    bounds = (window.start, window.end, window.days)

    def allowed(instant: datetime) -> bool:
        return inside_all(instant, zones, *bounds)

    assert is_allowed(at, zones, window) == (result == at) == allowed(at)
    if result is not None:
        assert at <= result <= at + HORIZON
        assert allowed(result)
        if channel in ("sms", "call"):
            # Never outside the legal window in ANY candidate zone.
            assert inside_all(result, zones, *LEGAL)
        if result > at:
            assert not allowed(result - timedelta(microseconds=1))
        stop = result
    else:
        stop = at + HORIZON
    # Earliest: no allowed minute between `at` and the answer (or the horizon).
    minute = ceil_minute(at)
    while minute < stop:
        assert not allowed(minute), f"{minute} is allowed before {result}"
        minute += MINUTE


@SETTINGS
@given(
    zones=st.lists(zone_names, min_size=1, max_size=3, unique=True),
    first=windows(),
    second=windows(),
    data=st.data(),
)
def test_narrowing_never_widens(
    zones: list[str], first: Window, second: Window, data: st.DataObject
) -> None:
    at = data.draw(instants(zones[0]))
    both = first.intersect(second)
    if is_allowed(at, zones, both):
        assert is_allowed(at, zones, first) and is_allowed(at, zones, second)
    for channel in ("sms", "call"):
        narrowed = effective_window(channel, first)
        if is_allowed(at, zones, narrowed):
            assert all(inside(at, zone, *LEGAL) for zone in zones)
            assert is_allowed(at, zones, first)
    narrow = next_allowed(at, zones, both, horizon=HORIZON)
    if narrow is not None:
        wide = next_allowed(at, zones, first, horizon=HORIZON)
        assert wide is not None and wide <= narrow


@st.composite
def day_targets(draw: st.DrawFn) -> tuple[str, datetime, int, datetime]:
    """(zone, base, days_after, target wall time); the target is often within a couple of
    hours of an offset change, so gaps and repeated hours are hit."""
    zone = draw(zone_names)
    tz = ZoneInfo(zone)
    days_after = draw(st.integers(0, 10))
    changes = transitions(zone, draw(st.integers(1995, 2037)))
    if changes and draw(st.integers(0, 3)) > 0:
        change = draw(st.sampled_from(changes))
        before = (change - timedelta(seconds=1)).astimezone(tz).utcoffset()
        assert before is not None
        # Within 90 minutes of the wall time at the change: inside any gap or repeated hour.
        shift = timedelta(minutes=draw(st.integers(-90, 90)))
        target = (change + before + shift).replace(tzinfo=None, second=0)
        event("target near a transition")
    else:
        base = draw(instants(zone))
        day = base.astimezone(tz).date() + timedelta(days=days_after)
        target = datetime.combine(day, time(*divmod(draw(st.integers(0, 24 * 60 - 1)), 60)))
    # A base on the right local day: noon local (noon exists on every day in this range).
    base_day = target.date() - timedelta(days=days_after)
    base = datetime.combine(base_day, time(12)).replace(tzinfo=tz).astimezone(UTC)
    assume(base.astimezone(tz).date() == base_day)
    return zone, base, days_after, target


@SETTINGS
@given(day_targets())
def test_local_time_on_day_is_the_first_moment_the_clock_reaches_that_time(
    case: tuple[str, datetime, int, datetime],
) -> None:
    zone, base, days_after, target = case
    tz = ZoneInfo(zone)
    result = local_time_on_day(base, days_after, target.time(), zone)

    def wall(instant: datetime) -> datetime:
        return instant.astimezone(tz).replace(tzinfo=None)

    assert wall(result) >= target
    # Before the answer the clock had not yet reached the target (scan the previous 26 hours).
    minute = result - MINUTE
    while minute > result - timedelta(hours=26):
        assert wall(minute) < target, f"{zone}: {minute} already reads {wall(minute)}"
        minute -= MINUTE
    if wall(result) != target:  # only when the target time does not exist that day
        assert wall(result - MINUTE) < target < wall(result)


@SETTINGS
@given(
    channel=st.sampled_from(["email", "sms", "call"]),
    consent=st.sampled_from([None, "opted_in", "opted_out"]),
    suppressed=st.sets(st.sampled_from(["email", "sms", "call", "all"]), max_size=2),
    zones=st.lists(zone_names, min_size=1, max_size=2, unique=True),
    campaign=st.one_of(st.none(), windows()),
    contact_minutes=st.lists(st.integers(-3 * 24 * 60, 0), max_size=4),
    cap_max=st.one_of(st.none(), st.integers(0, 3)),
    data=st.data(),
)
def test_decide_never_sends_against_a_rule(
    channel: str,
    consent: str | None,
    suppressed: set[str],
    zones: list[str],
    campaign: Window | None,
    contact_minutes: list[int],
    cap_max: int | None,
    data: st.DataObject,
) -> None:
    at = data.draw(instants(zones[0]))
    contacts = [at + timedelta(minutes=m) for m in contact_minutes]
    cap = None if cap_max is None else FrequencyCap(cap_max, timedelta(days=2))
    facts = ParticipantFacts(
        address="x@example.com" if channel == "email" else "+12125551234",
        consent=consent,  # type: ignore[arg-type]
        zones=zones,
        suppressed_channels=suppressed,
        contact_times=contacts,
    )
    decision = decide(channel, facts, at, send_window=campaign, call_window=campaign, cap=cap)
    verdict = gate(
        channel,
        address=facts.address,
        consent=facts.consent,
        suppressed_channels=suppressed,
        invalid_address=False,
    )
    window = effective_window(channel, campaign)
    if isinstance(decision, Skip):
        if decision.reason in ("suppressed", "opted_out", "no_consent"):
            assert decision == Skip(verdict.reason)  # type: ignore[arg-type]
        return
    # Anything but a skip means the gate allowed it: never suppressed, never opted out.
    assert verdict.allowed
    assert "all" not in suppressed and channel not in suppressed and consent != "opted_out"
    if channel != "email":
        assert consent == "opted_in" or not ConsentRules().requires_opt_in(channel)
    when = at if isinstance(decision, SendNow) else decision.until
    assert isinstance(decision, SendNow | WaitUntil)
    assert when >= at
    assert is_allowed(when, zones, window)
    if channel in ("sms", "call"):
        assert inside_all(when, zones, *LEGAL)
    if cap is not None:
        assert within_cap(contacts, when, cap.max, cap.per)
