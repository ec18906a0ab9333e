"""Validation of one participant row: raw values in, a clean record or EVERY reason out.

Pure: no database, no clock, no SQLAlchemy (the importer runs this in worker processes, which
should start fast and small). Columns of a participant file (CSV header names are matched
case-insensitively; JSONL keys the same names):

| column | format | stored as |
|---|---|---|
| `external_id` | REQUIRED: the program's member id, at most 128 characters | trimmed |
| `first_name`, `last_name` | text, at most 100 characters | as given |
| `email` | an email address (syntax only, no DNS lookup) | normalised |
| `phone` | E.164 (`+12025550123`) or national format | E.164 |
| `phone_region` | ISO 3166 region of a national-format phone (`US`) | not stored |
| `timezone` | IANA zone (`America/Chicago`) | as given |
| `locale` | BCP-47 tag: `en`, `es-MX`, `zh-Hans`, `zh-Hant-TW` | case-normalised |
| `status` | `active`, `inactive`, `lapsed`, `closed` (new member: blank = `active`) | lower case |
| `enrolled_at`, `last_activity_at` | ISO 8601 date or date-time; no offset = program zone | UTC |
| `points_balance`, `points_expiring` | whole number >= 0 (new member: blank = 0) | integer |
| `points_expire_at`, `renewal_date` | ISO date `YYYY-MM-DD` | date |
| `tier` | text, at most 64 characters | as given |
| `account_manager` | text, at most 128 characters | as given |
| `consent_email`, `_sms`, `_call` | yes/no, true/false, 1/0, y/n, opted_in/opted_out | consent |
| any other column | CSV: text; JSONL: any JSON value | `attributes` |

A column the file does not carry, and a blank cell, keep the stored value (a record's blank or
absent fields are None here; the store applies the defaults to new members only). With
``clear_blank`` (``--clear-blank``), a blank cell in a column the file carries clears the stored
value instead (NULL; status and points go back to their defaults; an attribute is removed).
Consents are never cleared: a blank consent cell means "not stated" and keeps the stored
consent. No cell may hold a NUL character or text that is not valid Unicode (PostgreSQL
refuses both), and names, tier and account manager are one line. A phone number without
`+` is read in the row's `phone_region`, else the program's region. `last_activity_at` only
moves forward (activity events may know of newer activity than the member file).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES as _SPECIAL_USE_DOMAINS
from email_validator import EmailNotValidError, validate_email

# Kept here rather than imported from engine.db.models so that validation workers do not load
# SQLAlchemy; tests/participants check that the two stay equal.
STATUSES = ("active", "inactive", "lapsed", "closed")
CONSENT_COLUMNS = {"consent_email": "email", "consent_sms": "sms", "consent_call": "call"}
KNOWN_COLUMNS = frozenset(
    {
        "external_id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "phone_region",
        "timezone",
        "locale",
        "status",
        "enrolled_at",
        "last_activity_at",
        "points_balance",
        "points_expiring",
        "points_expire_at",
        "renewal_date",
        "tier",
        "account_manager",
        *CONSENT_COLUMNS,
    }
)
MAX_INT = 2**31 - 1  # the points columns are 32-bit integers on PostgreSQL
# Stored fields a blank cell may clear (--clear-blank). Not last_activity_at: it only moves
# forward; not the consents: a blank consent cell means "not stated".
CLEARABLE = frozenset(
    {
        "first_name",
        "last_name",
        "email",
        "phone",
        "timezone",
        "locale",
        "status",
        "enrolled_at",
        "points_balance",
        "points_expiring",
        "points_expire_at",
        "renewal_date",
        "tier",
        "account_manager",
    }
)
# Text shown on one line everywhere (call lists, email greetings): CR or LF would break it.
_ONE_LINE = ("first_name", "last_name", "tier", "account_manager")

_CONSENT_WORDS = {
    "yes": "opted_in",
    "y": "opted_in",
    "true": "opted_in",
    "1": "opted_in",
    "opted_in": "opted_in",
    "no": "opted_out",
    "n": "opted_out",
    "false": "opted_out",
    "0": "opted_out",
    "opted_out": "opted_out",
}
_LOCALE = re.compile(
    r"^(?P<lang>[A-Za-z]{2,3})(?:[-_](?P<script>[A-Za-z]{4}))?(?:[-_](?P<region>[A-Za-z]{2}|\d{3}))?$"
)
_UNSIGNED = re.compile(r"^\+?\d+$")
# Plain ASCII addresses (the vast majority) are checked by this expression instead of by
# email-validator, which costs ~35 us per address. It only ever ACCEPTS addresses that
# email-validator would accept and normalise the same way (a property test holds it to that);
# everything else goes to email-validator, which also writes the error message.
_SIMPLE_EMAIL = re.compile(
    r"^(?P<local>[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})$"
)


class ParticipantRecord(NamedTuple):
    """A validated row, ready to store. (A NamedTuple: it crosses process boundaries cheaply.)"""

    external_id: str
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    timezone: str | None
    locale: str | None
    status: str | None  # None: blank or absent (a new member gets "active")
    enrolled_at: datetime | None
    last_activity_at: datetime | None
    points_balance: int | None  # None: blank or absent (a new member gets 0)
    points_expiring: int | None
    points_expire_at: date | None
    renewal_date: date | None
    tier: str | None
    account_manager: str | None
    # Attribute columns of the row; with clear_blank a blank one is None (remove the key).
    attributes: dict[str, Any]
    # channel -> "opted_in" | "opted_out"; channels the row does not state are absent.
    consents: dict[str, str]
    # Fields (CLEARABLE) whose blank cell clears the stored value: the columns the row
    # carries when the import clears blanks, else none.
    clears: frozenset[str] = frozenset()

    @property
    def stored_attributes(self) -> dict[str, Any]:
        """The attributes a new member is stored with (no removals)."""
        if None not in self.attributes.values():
            return self.attributes  # the usual case: nothing to remove
        return {k: v for k, v in self.attributes.items() if v is not None}


@dataclass(frozen=True)
class ValidationContext:
    """What a row is read against: the program's zone (naive times) and phone region."""

    timezone: str
    region: str
    # A blank cell clears the stored value (instead of keeping it).
    clear_blank: bool = False


def text(value: Any) -> str | None:
    """A cell as trimmed text; blank (or JSON null) is None. JSON numbers and booleans become
    their usual spelling so that e.g. ``"points_balance": 120`` reads like ``120`` in a CSV."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None if value == "" else str(value)


def validate_participant(
    row: dict[str, Any], ctx: ValidationContext
) -> tuple[ParticipantRecord | None, list[str]]:
    """``row`` maps lower-case column names to raw values. Returns (record, []) or
    (None, every reason the row fails)."""
    errors: list[str] = []
    if not _plainly_storable(row):
        for column, value in row.items():
            problem = unstorable(value)
            if problem is not None:
                errors.append(f"{column}: {problem}")
        if errors:  # the other checks would only repeat the same cells in their own words
            return None, errors
    external_id = text(row.get("external_id"))
    if external_id is None:
        errors.append("external_id: required")
    elif len(external_id) > 128:
        errors.append(f"external_id: longer than 128 characters ({len(external_id)})")

    first_name = _bounded(row, "first_name", 100, errors)
    last_name = _bounded(row, "last_name", 100, errors)
    tier = _bounded(row, "tier", 64, errors)
    account_manager = _bounded(row, "account_manager", 128, errors)
    for column, value in zip(
        _ONE_LINE, (first_name, last_name, tier, account_manager), strict=True
    ):
        if value is not None and ("\n" in value or "\r" in value):
            errors.append(f"{column}: contains a line break (CR or LF); it must be one line")
    email = _email(text(row.get("email")), errors)
    phone = _phone(text(row.get("phone")), text(row.get("phone_region")), ctx, errors)

    timezone = text(row.get("timezone"))
    if timezone is not None and not is_timezone(timezone):
        errors.append(f"timezone: {timezone!r} is not an IANA time zone (e.g. America/Chicago)")
    locale = _locale(text(row.get("locale")), errors)

    status = text(row.get("status"))
    if status is not None:
        status = status.lower()
        if status not in STATUSES:
            errors.append(f"status: {status!r} is not one of {', '.join(STATUSES)}")

    enrolled_at = _datetime(row, "enrolled_at", ctx.timezone, errors)
    last_activity_at = _datetime(row, "last_activity_at", ctx.timezone, errors)
    points_balance = _points(row, "points_balance", errors)
    points_expiring = _points(row, "points_expiring", errors)
    points_expire_at = _date(row, "points_expire_at", errors)
    renewal_date = _date(row, "renewal_date", errors)

    consents: dict[str, str] = {}
    for column, channel in CONSENT_COLUMNS.items():
        raw = text(row.get(column))
        if raw is None:
            continue
        status_value = _CONSENT_WORDS.get(raw.lower())
        if status_value is None:
            errors.append(f"{column}: {raw!r} is not yes/no (or true/false, 1/0, y/n)")
        else:
            consents[channel] = status_value

    clear_blank = ctx.clear_blank
    attributes: dict[str, Any] = {}
    for key, value in row.items():
        if key in KNOWN_COLUMNS:
            continue
        if value is None or text(value) is None:
            if clear_blank:
                attributes[key] = None  # remove the stored attribute
        else:
            attributes[key] = value.strip() if isinstance(value, str) else value

    if errors:
        return None, errors
    assert external_id is not None  # an empty id is an error above
    return (
        ParticipantRecord(
            external_id=external_id,
            first_name=first_name,
            last_name=last_name,
            email=email,
            phone=phone,
            timezone=timezone,
            locale=locale,
            status=status,
            enrolled_at=enrolled_at,
            last_activity_at=last_activity_at,
            points_balance=points_balance,
            points_expiring=points_expiring,
            points_expire_at=points_expire_at,
            renewal_date=renewal_date,
            tier=tier,
            account_manager=account_manager,
            attributes=attributes,
            consents=consents,
            clears=frozenset(c for c in row if c in CLEARABLE) if clear_blank else frozenset(),
        ),
        [],
    )


Task = tuple[ValidationContext, Sequence[str], list[tuple[int, Any]]]
Result = list[tuple[ParticipantRecord | None, list[str]]]


def validate_chunk(task: Task) -> Result:
    """Validate a chunk of rows; runs in a worker process, so it lives in this light module.
    Items are (line, CSV cells or JSONL object); results come back in the same order."""
    ctx, columns, items = task
    results: Result = []
    for _line, payload in items:
        row = dict(zip(columns, payload, strict=True)) if isinstance(payload, list) else payload
        try:
            results.append(validate_participant(row, ctx))
        except Exception as exc:  # a validator bug must reject one row, not kill the import
            results.append((None, [f"could not be validated ({type(exc).__name__}: {exc})"]))
    return results


# --------------------------------------------------------------------------- fields


def _bounded(row: dict[str, Any], column: str, limit: int, errors: list[str]) -> str | None:
    value = text(row.get(column))
    if value is not None and len(value) > limit:
        errors.append(f"{column}: longer than {limit} characters ({len(value)})")
    return value


def normalise_email(value: str) -> str:
    """The stored form of an email address; raises ValueError with the reason."""
    match = _SIMPLE_EMAIL.match(value)
    if (
        match is not None
        and len(value) <= 254
        and len(match["local"]) <= 64
        and "--" not in match["domain"]
    ):
        domain = match["domain"].lower()
        if not _is_special_use(domain):
            return f"{match['local']}@{domain}"
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


@lru_cache(maxsize=4096)
def _is_special_use(domain: str) -> bool:
    """A special-use domain (e.g. ``test``, ``local``), which email-validator refuses. Cached:
    a member file has few distinct domains."""
    return any(domain == d or domain.endswith("." + d) for d in _SPECIAL_USE_DOMAINS)


def _email(value: str | None, errors: list[str]) -> str | None:
    if value is None:
        return None
    try:
        return normalise_email(value)
    except ValueError as exc:
        errors.append(f"email: {value!r}: {exc}")
        return None


def normalise_phone(value: str, region: str) -> str:
    """E.164 form of a phone number read in ``region``; raises ValueError with the reason."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number ({exc._msg})") from None
    # is_valid_number first works out the number's region, which for +1 means trying ~25
    # regions; a number valid in the region it was read in is valid, so try that first.
    if not (
        phonenumbers.is_valid_number_for_region(number, region)
        or phonenumbers.is_valid_number(number)
    ):
        where = "" if value.startswith("+") else f" in region {region}"
        raise ValueError(f"not a valid phone number{where}")
    return f"+{number.country_code}{phonenumbers.national_significant_number(number)}"


def _phone(
    value: str | None, region: str | None, ctx: ValidationContext, errors: list[str]
) -> str | None:
    if region is not None:
        region = region.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            errors.append(f"phone_region: {region!r} is not an ISO 3166 region code")
            return None
    if value is None:
        return None
    try:
        return normalise_phone(value, region or ctx.region)
    except ValueError as exc:
        errors.append(f"phone: {value!r}: {exc}")
        return None


@lru_cache(maxsize=1024)
def is_timezone(name: str) -> bool:
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=256)
def normalise_locale(value: str) -> str | None:
    """``es_mx`` -> ``es-MX``, ``zh-hans`` -> ``zh-Hans``; None when not a language tag."""
    match = _LOCALE.match(value)
    if match is None:
        return None
    parts = [match["lang"].lower()]
    if match["script"]:
        parts.append(match["script"].title())
    if match["region"]:
        parts.append(match["region"].upper())
    return "-".join(parts)


def _locale(value: str | None, errors: list[str]) -> str | None:
    if value is None:
        return None
    normalised = normalise_locale(value)
    if normalised is None:
        errors.append(f"locale: {value!r} is not a language tag (e.g. en, es-MX, zh-Hans)")
    return normalised


def parse_datetime(value: str, timezone: str) -> datetime:
    """ISO 8601 date or date-time; a value without offset is local time in ``timezone``."""
    try:
        if len(value) <= 10:
            parsed = datetime.combine(date.fromisoformat(value), time())
        else:
            parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            "not an ISO 8601 date or date-time (e.g. 2026-03-02 or 2026-03-02T14:30:00+00:00)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone(timezone))
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: before year 1 in UTC
        raise ValueError("out of range (years 1 to 9999 in UTC)") from None


def _datetime(
    row: dict[str, Any], column: str, timezone: str, errors: list[str]
) -> datetime | None:
    value = text(row.get(column))
    if value is None:
        return None
    try:
        return parse_datetime(value, timezone)
    except ValueError as exc:
        errors.append(f"{column}: {value!r}: {exc}")
        return None


def _date(row: dict[str, Any], column: str, errors: list[str]) -> date | None:
    value = text(row.get(column))
    if value is None:
        return None
    if len(value) != 10:
        errors.append(f"{column}: {value!r} is not an ISO date (YYYY-MM-DD)")
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors.append(f"{column}: {value!r} is not an ISO date (YYYY-MM-DD)")
        return None


def _points(row: dict[str, Any], column: str, errors: list[str]) -> int | None:
    value = text(row.get(column))
    if value is None:
        return None
    if not _UNSIGNED.match(value):
        if value.startswith("-") and _UNSIGNED.match(value[1:]):
            errors.append(f"{column}: {value[:20]} is negative; it must be >= 0")
        else:
            errors.append(f"{column}: {value[:40]!r} is not a whole number")
        return None
    # Length first: int() of thousands of digits is slow, and refused past 4,300.
    if len(value.lstrip("+0")) > 10 or int(value) > MAX_INT:
        errors.append(f"{column}: {value[:20]} is too large (at most {MAX_INT})")
        return None
    return int(value)


def _plainly_storable(row: dict[str, Any]) -> bool:
    """The usual row (all text, no NUL, ASCII or valid UTF-8), checked at C speed in one go;
    False sends it to the per-cell check."""
    try:
        joined = "".join(row.values())
    except TypeError:  # JSONL numbers, objects...: checked value by value
        return False
    if "\x00" in joined:
        return False
    if joined.isascii():
        return True
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unstorable(value: Any) -> str | None:
    """Why a raw value (a CSV cell, or a JSON value with everything nested in it) cannot be
    stored: a NUL character, which PostgreSQL refuses in text and JSON, or a lone surrogate
    (a JSON escape such as \\ud800, or a byte the reader could not decode), which is not
    Unicode text at all. None when it can."""
    if isinstance(value, str):
        if "\x00" in value:
            return "contains a NUL character"
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return (
                    "contains text that is not valid Unicode (a lone surrogate, or a byte "
                    "the file's encoding does not define)"
                )
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "is NaN or infinite (not a JSON number; PostgreSQL refuses it)"
    if isinstance(value, dict):
        for key, item in value.items():
            problem = unstorable(key) or unstorable(item)
            if problem is not None:
                return problem
    elif isinstance(value, list):
        for item in value:
            problem = unstorable(item)
            if problem is not None:
                return problem
    return None
