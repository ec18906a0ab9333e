"""Zone resolution: record, then phone number, then program zone, then the region's zones."""

from __future__ import annotations

import pytest

from engine.policy import ZoneResolution, candidate_zones, zones_for_phone, zones_for_region


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"participant_zone": "Asia/Kolkata", "phone": "+12125551234", "program_zone": "UTC"},
            ZoneResolution(("Asia/Kolkata",), "participant"),
        ),
        (
            {"participant_zone": "Not/A_Zone", "phone": "+12125551234"},
            ZoneResolution(("America/New_York",), "phone"),
        ),
        (
            # No "+": parsed with the region; 415 is San Francisco.
            {"phone": "(415) 555-0123", "region": "US", "program_zone": "America/New_York"},
            ZoneResolution(("America/Los_Angeles",), "phone"),
        ),
        (
            {"phone": "+442079460000", "program_zone": "America/New_York"},
            ZoneResolution(("Europe/London",), "phone"),
        ),
        (
            {"phone": "+1 555 555 0123", "program_zone": "Europe/London"},  # invalid number
            ZoneResolution(("Europe/London",), "program"),
        ),
        (
            {"phone": "not a number", "program_zone": "Europe/London"},
            ZoneResolution(("Europe/London",), "program"),
        ),
        (
            {"participant_zone": "", "phone": "", "program_zone": "Pacific/Chatham"},
            ZoneResolution(("Pacific/Chatham",), "program"),
        ),
        (
            {"region": "nz"},
            ZoneResolution(("Pacific/Auckland", "Pacific/Chatham"), "region"),
        ),
    ],
)
def test_candidate_zones(kwargs: dict[str, str], expected: ZoneResolution) -> None:
    assert candidate_zones(**kwargs) == expected


def test_a_number_can_map_to_several_zones_and_all_are_kept() -> None:
    resolution = candidate_zones(phone="+79161234567", program_zone="UTC")  # Russian mobile
    assert resolution.source == "phone"
    assert {"Europe/Moscow", "Asia/Vladivostok"} <= set(resolution.zones)
    toll_free = zones_for_phone("+18005550123")  # +1 non-geographic: every +1 zone
    assert {"America/New_York", "America/Los_Angeles", "Pacific/Honolulu"} <= set(toll_free)


def test_phonenumbers_placeholder_zone_is_not_a_candidate() -> None:
    assert "Etc/Unknown" not in zones_for_phone("+18005550123")
    assert zones_for_phone("+1 555 555 0123") == ()


def test_region_zones_come_from_tzdata() -> None:
    us = zones_for_region("US")
    assert {"America/New_York", "America/Chicago", "America/Denver", "Pacific/Honolulu"} <= set(us)
    assert "Europe/London" not in us
    assert zones_for_region("IN") == ("Asia/Kolkata",)
    assert zones_for_region("XX") == ()


def test_nothing_known_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot tell the recipient's time zone"):
        candidate_zones(phone="nonsense", region="XX")
