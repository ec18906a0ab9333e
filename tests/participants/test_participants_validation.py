"""Pure row rules: every rejection reason, normalisation, and the email fast path."""

from __future__ import annotations

import string
from datetime import UTC, date, datetime
from typing import Any

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.db.models import PARTICIPANT_STATUSES
from engine.participants.validation import (
    STATUSES,
    ValidationContext,
    normalise_email,
    normalise_locale,
    normalise_phone,
    validate_participant,
)

CTX = ValidationContext(timezone="America/New_York", region="US")
GOOD: dict[str, Any] = {
    "external_id": "M1",
    "first_name": "Ana",
    "email": "ana@example.com",
    "phone": "+12025550143",
}


def test_statuses_match_the_schema() -> None:
    assert STATUSES == PARTICIPANT_STATUSES


# One row per rejection reason: (column, bad value, a fragment of the reason).
REJECTIONS = [
    ("external_id", "", "external_id: required"),
    ("external_id", "x" * 129, "external_id: longer than 128"),
    ("first_name", "a" * 101, "first_name: longer than 100"),
    ("last_name", "a" * 101, "last_name: longer than 100"),
    ("tier", "t" * 65, "tier: longer than 64"),
    ("account_manager", "m" * 129, "account_manager: longer than 128"),
    ("email", "not-an-email", "email: 'not-an-email'"),
    ("email", "a@localhost", "email: 'a@localhost'"),
    ("phone", "12", "phone: '12': not a valid phone number in region US"),
    ("phone", "call me", "phone: 'call me': not a phone number"),
    ("phone_region", "ZZ", "phone_region: 'ZZ' is not an ISO 3166 region"),
    ("timezone", "Mars/Olympus", "timezone: 'Mars/Olympus' is not an IANA time zone"),
    ("locale", "english please", "locale: 'english please' is not a language tag"),
    ("status", "zombie", "status: 'zombie' is not one of"),
    ("enrolled_at", "2024-13-01", "enrolled_at: '2024-13-01': not an ISO 8601"),
    ("last_activity_at", "yesterday", "last_activity_at: 'yesterday': not an ISO 8601"),
    ("points_balance", "-5", "points_balance: -5 is negative"),
    ("points_balance", "12.5", "points_balance: '12.5' is not a whole number"),
    ("points_expiring", "lots", "points_expiring: 'lots' is not a whole number"),
    ("points_expiring", str(2**31), "points_expiring: 2147483648 is too large"),
    ("points_expire_at", "2026-02-30", "points_expire_at: '2026-02-30' is not an ISO date"),
    ("renewal_date", "2026-03-02T10:00", "renewal_date: '2026-03-02T10:00' is not an ISO date"),
    ("consent_email", "maybe", "consent_email: 'maybe' is not yes/no"),
    ("consent_sms", "sometimes", "consent_sms: 'sometimes' is not yes/no"),
    ("consent_call", "2", "consent_call: '2' is not yes/no"),
]


@pytest.mark.parametrize(("column", "value", "reason"), REJECTIONS, ids=[r[2] for r in REJECTIONS])
def test_each_rejection_reason(column: str, value: str, reason: str) -> None:
    record, reasons = validate_participant({**GOOD, column: value}, CTX)
    assert record is None
    assert len(reasons) == 1 and reason in reasons[0], reasons


def test_every_reason_is_reported_not_only_the_first() -> None:
    row = {**GOOD, **{column: value for column, value, _ in REJECTIONS[2:8:2]}}
    record, reasons = validate_participant(row, CTX)
    assert record is None
    assert [r.split(":")[0] for r in reasons] == ["first_name", "tier", "email"]


def test_a_good_row_is_normalised() -> None:
    record, reasons = validate_participant(
        {
            "external_id": "  M7 ",
            "first_name": "Lucía",
            "email": "Lucia.Perez@Example.MX",
            "phone": "55 1234 5678",
            "phone_region": "mx",
            "timezone": "America/Mexico_City",
            "locale": "es_mx",
            "status": "LAPSED",
            "enrolled_at": "2024-01-05",
            "last_activity_at": "2026-02-01T09:30:00",
            "points_balance": "1200",
            "points_expiring": "",
            "points_expire_at": "2026-04-01",
            "consent_email": "Yes",
            "consent_sms": "0",
            "consent_call": "",
            "home_store": " Polanco ",
            "empty_extra": "",
        },
        CTX,
    )
    assert reasons == []
    assert record is not None
    assert record.external_id == "M7"
    assert record.email == "Lucia.Perez@example.mx"
    assert record.phone == "+525512345678"
    assert record.locale == "es-MX"
    assert record.status == "lapsed"
    # Naive times are in the program's zone (New York, UTC-5 in winter).
    assert record.enrolled_at == datetime(2024, 1, 5, 5, 0, tzinfo=UTC)
    assert record.last_activity_at == datetime(2026, 2, 1, 14, 30, tzinfo=UTC)
    assert record.points_balance == 1200 and record.points_expiring is None  # blank: kept
    assert record.points_expire_at == date(2026, 4, 1)
    assert record.consents == {"email": "opted_in", "sms": "opted_out"}
    assert record.attributes == {"home_store": "Polanco"}


def test_blank_cells_are_none_and_defaults_are_left_to_the_store() -> None:
    """None means "keep the stored value" (a new member gets the default: status active,
    points 0); nothing is cleared unless the import clears blanks."""
    row = {"external_id": "M1", "email": "", "tier": "  ", "status": "", "extra": ""}
    record, _ = validate_participant(row, CTX)
    assert record is not None
    assert record.email is None and record.tier is None and record.status is None
    assert record.points_balance is None and record.attributes == {}
    assert record.consents == {} and record.clears == frozenset()

    clearing = ValidationContext(CTX.timezone, CTX.region, clear_blank=True)
    record, _ = validate_participant({**row, "consent_sms": ""}, clearing)
    assert record is not None
    assert record.clears == {"email", "tier", "status"}  # the carried columns; not consents
    assert record.attributes == {"extra": None}  # None: remove the stored attribute
    assert record.stored_attributes == {}


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"first_name": "Ana\nMaria"}, "first_name: contains a line break"),
        ({"last_name": "Pe\rrez"}, "last_name: contains a line break"),
        ({"tier": "gold\r\nsilver"}, "tier: contains a line break"),
        ({"first_name": "A\x00na"}, "first_name: contains a NUL character"),
        ({"home_store": "Pol\x00anco"}, "home_store: contains a NUL character"),
        ({"prefs": {"a": ["x\x00"]}}, "prefs: contains a NUL character"),
        ({"prefs": {"k\x00": 1}}, "prefs: contains a NUL character"),
        ({"email": "a\ud800@example.com"}, "email: contains text that is not valid Unicode"),
        ({"notes": "\udce9"}, "notes: contains text that is not valid Unicode"),
        ({"points_balance": "9" * 4300}, "points_balance: 99999999999999999999 is too large"),
        ({"score": float("nan")}, "score: is NaN or infinite"),
        ({"prefs": [1.5, float("inf")]}, "prefs: is NaN or infinite"),
    ],
)
def test_cells_that_cannot_be_stored_reject_the_row(row: dict[str, Any], reason: str) -> None:
    record, reasons = validate_participant({"external_id": "M1", **row}, CTX)
    assert record is None and any(r.startswith(reason) for r in reasons), reasons


def test_jsonl_values_are_read_like_csv_cells() -> None:
    record, reasons = validate_participant(
        {"external_id": 42, "points_balance": 120, "consent_sms": False, "prefs": {"a": [1]}},
        CTX,
    )
    assert reasons == []
    assert record is not None
    assert record.external_id == "42" and record.points_balance == 120
    assert record.consents == {"sms": "opted_out"}
    assert record.attributes == {"prefs": {"a": [1]}}


def test_offset_datetimes_are_converted_to_utc() -> None:
    record, _ = validate_participant(
        {"external_id": "M1", "last_activity_at": "2026-03-02T10:00:00+09:00"}, CTX
    )
    assert record is not None
    assert record.last_activity_at == datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("en", "en"),
        ("es-mx", "es-MX"),
        ("zh-hans", "zh-Hans"),
        ("zh_Hant_TW", "zh-Hant-TW"),
        ("es-419", "es-419"),
        ("english", None),
        ("e", None),
    ],
)
def test_locale_normalisation(raw: str, expected: str | None) -> None:
    assert normalise_locale(raw) == expected


def test_phone_region_defaults_to_the_program_region() -> None:
    assert normalise_phone("020 7946 0958", "GB") == "+442079460958"
    record, reasons = validate_participant(
        {"external_id": "M1", "phone": "020 7946 0958"}, ValidationContext("Europe/London", "GB")
    )
    assert record is not None and record.phone == "+442079460958", reasons


def _library(address: str) -> str | None:
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        return None


_atom = st.text(string.ascii_letters + string.digits + "_+-", min_size=1, max_size=12)
_label = st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=12)
_emails = st.builds(
    lambda local, labels, tld: f"{'.'.join(local)}@{'.'.join(labels)}.{tld}",
    st.lists(_atom, min_size=1, max_size=3),
    st.lists(_label, min_size=1, max_size=3),
    st.sampled_from(["com", "ORG", "mx", "test", "local", "io", "c0m", "x"]),
)


@settings(max_examples=300, deadline=None)
@given(_emails)
def test_email_fast_path_agrees_with_email_validator(address: str) -> None:
    try:
        ours: str | None = normalise_email(address)
    except ValueError:
        ours = None
    assert ours == _library(address)
