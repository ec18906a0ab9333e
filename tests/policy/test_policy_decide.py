"""decide(): the one call the sender makes; gate, cap and window combined."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import pytest

from engine.policy import (
    ConsentRules,
    FrequencyCap,
    ParticipantFacts,
    SendNow,
    Skip,
    WaitUntil,
    Window,
    decide,
)

MONDAY_10_EST = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
NY = ("America/New_York",)


def facts(**changes: object) -> ParticipantFacts:
    base: dict[str, object] = {
        "address": "+12125551234",
        "consent": "opted_in",
        "zones": NY,
    }
    base.update(changes)
    return ParticipantFacts(**base)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CapLike:
    """Shaped like the campaign file's FrequencyCap."""

    max: int
    per: timedelta


@dataclass(frozen=True)
class SpecLike:
    start: time
    end: time
    days: list[str]


def test_send_now_inside_every_rule() -> None:
    assert decide("sms", facts(), MONDAY_10_EST) == SendNow()


def test_gate_refusal_is_a_skip_with_the_gate_reason() -> None:
    assert decide("sms", facts(consent=None), MONDAY_10_EST) == Skip("no_consent")
    assert decide("call", facts(suppressed_channels={"all"}), MONDAY_10_EST) == Skip("suppressed")
    assert decide("email", facts(address=None), MONDAY_10_EST) == Skip("no_address")


def test_consent_rules_are_passed_to_the_gate() -> None:
    relaxed = ConsentRules(sms_requires_opt_in=False)
    assert decide("sms", facts(consent=None), MONDAY_10_EST, consent_rules=relaxed) == SendNow()


def test_outside_the_legal_window_waits_for_08_00_local() -> None:
    late = datetime(2026, 3, 3, 2, 30, tzinfo=UTC)  # 21:30 EST
    expected = datetime(2026, 3, 3, 13, 0, tzinfo=UTC)  # 08:00 EST
    assert decide("sms", facts(), late) == WaitUntil(expected, "outside_window")
    assert decide("call", facts(), late) == WaitUntil(expected, "outside_window")


def test_email_ignores_the_legal_window_but_not_the_campaign_window() -> None:
    late = datetime(2026, 3, 3, 2, 30, tzinfo=UTC)  # 21:30 EST
    email = facts(address="ana@example.com", consent=None)
    assert decide("email", email, late) == SendNow()
    window = Window.of("09:00", "20:00", ["mon", "tue", "wed", "thu", "fri"])
    assert decide("email", email, late, send_window=window) == WaitUntil(
        datetime(2026, 3, 3, 14, 0, tzinfo=UTC), "outside_window"
    )


def test_calls_use_the_call_window_and_messages_the_send_window() -> None:
    send = SpecLike(time(9), time(11), ["mon"])
    call = SpecLike(time(14), time(16), ["mon"])
    assert decide("sms", facts(), MONDAY_10_EST, send_window=send, call_window=call) == SendNow()
    assert decide("call", facts(), MONDAY_10_EST, send_window=send, call_window=call) == WaitUntil(
        datetime(2026, 3, 2, 19, 0, tzinfo=UTC), "outside_window"
    )


def test_a_campaign_window_wider_than_the_law_does_not_widen_it() -> None:
    early = datetime(2026, 3, 2, 11, 30, tzinfo=UTC)  # 06:30 EST
    wide = Window.of("06:00", "23:00")
    assert decide("sms", facts(), early, send_window=wide) == WaitUntil(
        datetime(2026, 3, 2, 13, 0, tzinfo=UTC), "outside_window"
    )


def test_frequency_cap_delays_then_the_window_applies() -> None:
    # Capped until 20:00 EST; the legal window is open then.
    contacts = [MONDAY_10_EST - timedelta(days=7) + timedelta(hours=10)]
    cap = FrequencyCap(1, timedelta(days=7))
    assert decide("sms", facts(contact_times=contacts), MONDAY_10_EST, cap=cap) == WaitUntil(
        datetime(2026, 3, 3, 1, 0, tzinfo=UTC), "frequency_cap"
    )
    # Capped until 22:00 EST: the window pushes it to 08:00 the next day.
    contacts = [MONDAY_10_EST - timedelta(days=7) + timedelta(hours=12)]
    assert decide(
        "sms", facts(contact_times=contacts), MONDAY_10_EST, cap=CapLike(1, timedelta(days=7))
    ) == WaitUntil(datetime(2026, 3, 3, 13, 0, tzinfo=UTC), "frequency_cap")


def test_zero_cap_and_a_window_that_never_opens_are_skips() -> None:
    assert decide("sms", facts(), MONDAY_10_EST, cap=CapLike(0, timedelta(days=1))) == Skip(
        "frequency_cap"
    )
    two_zones = facts(zones=("America/New_York", "Asia/Kolkata"))
    narrow = Window.of("09:00", "10:00")
    assert decide("sms", two_zones, MONDAY_10_EST, send_window=narrow) == Skip("window_never_opens")


def test_decide_needs_an_aware_instant() -> None:
    with pytest.raises(ValueError, match="naive"):
        decide("sms", facts(), datetime(2026, 3, 2, 15, 0))
