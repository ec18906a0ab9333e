"""The synthetic loyalty program: deterministic, realistic, consistent, streaming-shaped."""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from phonenumbers import PhoneNumberFormat

from engine.demo.generator import (
    BAD_ROW_KINDS,
    DatasetPaths,
    GeneratedDataset,
    generate_dataset,
    write_dataset,
)

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)

# The columns the brief promises, spelled out here rather than imported from the generator.
EXPECTED_PARTICIPANT_COLUMNS = [
    "external_id", "first_name", "last_name", "email", "phone", "phone_region", "timezone",
    "locale", "status", "enrolled_at", "last_activity_at", "points_balance", "points_expiring",
    "points_expire_at", "tier", "renewal_date", "account_manager", "consent_email",
    "consent_sms", "consent_call",
]  # fmt: skip
EXPECTED_EVENT_COLUMNS = ["external_id", "type", "occurred_at", "points", "amount", "reference"]


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def parse_utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0), value
    return parsed


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> GeneratedDataset:
    return generate_dataset(tmp_path_factory.mktemp("dataset"), participants=5000, seed=11, now=NOW)


@pytest.fixture(scope="module")
def participants(dataset: GeneratedDataset) -> list[dict[str, str]]:
    return read_csv(dataset.paths.participants)[1]


@pytest.fixture(scope="module")
def good(dataset: GeneratedDataset, participants: list[dict[str, str]]) -> list[dict[str, str]]:
    # Line numbers: the header is line 1 and no cell spans lines.
    return [row for line, row in enumerate(participants, 2) if line not in dataset.bad_lines]


@pytest.fixture(scope="module")
def events(dataset: GeneratedDataset) -> list[dict[str, str]]:
    return read_csv(dataset.paths.events)[1]


def test_same_seed_and_now_give_identical_files(tmp_path: Path) -> None:
    first = write_dataset(tmp_path / "a", participants=300, seed=3, now=NOW)
    second = write_dataset(tmp_path / "b", participants=300, seed=3, now=NOW)
    other_seed = write_dataset(tmp_path / "c", participants=300, seed=4, now=NOW)
    other_now = write_dataset(tmp_path / "d", participants=300, seed=3, now=NOW + timedelta(1))
    assert isinstance(first, DatasetPaths)
    assert first.participants.read_bytes() == second.participants.read_bytes()
    assert first.events.read_bytes() == second.events.read_bytes()
    assert first.participants.read_bytes() != other_seed.participants.read_bytes()
    assert first.events.read_bytes() != other_now.events.read_bytes()


def test_generation_does_not_touch_the_global_random_state(tmp_path: Path) -> None:
    import random

    random.seed(1)
    expected = random.random()
    random.seed(1)
    write_dataset(tmp_path, participants=50, now=NOW)
    assert random.random() == expected


def test_now_must_be_aware(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="naive"):
        write_dataset(tmp_path, participants=1, now=datetime(2026, 3, 2))


def test_columns(dataset: GeneratedDataset, participants: list[dict[str, str]]) -> None:
    header, _ = read_csv(dataset.paths.participants)
    assert header[: len(EXPECTED_PARTICIPANT_COLUMNS)] == EXPECTED_PARTICIPANT_COLUMNS
    extras = header[len(EXPECTED_PARTICIPANT_COLUMNS) :]
    assert {"home_store", "join_channel", "member_type"} <= set(extras)
    assert all(None not in row and len(row) == len(header) for row in participants)
    assert read_csv(dataset.paths.events)[0] == EXPECTED_EVENT_COLUMNS


def test_spread_is_realistic(good: list[dict[str, str]]) -> None:
    n = len(good)
    locales = Counter(row["locale"] for row in good)
    assert set(locales) == {"en", "es", "zh"}
    assert 0.60 < locales["en"] / n < 0.70
    assert 0.16 < locales["es"] / n < 0.24
    assert 0.11 < locales["zh"] / n < 0.19

    statuses = Counter(row["status"] for row in good)
    assert set(statuses) == {"active", "inactive", "lapsed", "closed"}
    assert statuses.most_common(1)[0][0] == "active"
    tiers = Counter(row["tier"] for row in good)
    assert set(tiers) == {"basic", "silver", "gold", "platinum"}
    assert tiers["basic"] > tiers["silver"] > tiers["gold"] > tiers["platinum"] > 0

    def share(column: str, value: str) -> float:
        return sum(row[column] == value for row in good) / n

    assert 0.03 < share("consent_email", "no") < 0.07
    assert 0.07 < share("consent_sms", "no") < 0.13
    assert share("consent_sms", "") > 0.05  # some members never stated an SMS preference

    zones = {row["timezone"].split("/")[0] for row in good if row["timezone"]}
    assert {"America", "Europe", "Asia"} <= zones

    zh_names = [row["first_name"] + row["last_name"] for row in good if row["locale"] == "zh"]
    chinese = [name for name in zh_names if re.search(r"[\u4e00-\u9fff]", name)]
    assert 0.2 < len(chinese) / len(zh_names) < 0.8
    assert any(re.search(r"[áéíóúñ]", row["last_name"]) for row in good if row["locale"] == "es")


def test_points_renewals_and_managers(good: list[dict[str, str]]) -> None:
    today = NOW.date()
    balances = sorted(int(row["points_balance"]) for row in good)
    assert balances[0] >= 0
    median, top = balances[len(balances) // 2], balances[-1]
    assert top > 20 * median  # a long tail: a few members hold very large balances
    soon = 0
    for row in good:
        expiring = int(row["points_expiring"])
        assert 0 <= expiring <= int(row["points_balance"])
        if expiring:
            expires = date.fromisoformat(row["points_expire_at"])
            assert today < expires <= today + timedelta(days=180)
            soon += expires <= today + timedelta(days=30)
        else:
            assert row["points_expire_at"] == ""
        renewal = date.fromisoformat(row["renewal_date"])
        assert today - timedelta(days=366) <= renewal <= today + timedelta(days=366)
        if row["status"] == "lapsed":
            assert renewal < today
        if row["account_manager"]:
            assert row["tier"] in ("gold", "platinum")
        if row["tier"] == "platinum":
            assert row["account_manager"]
    assert soon > 0.02 * len(good)
    renewals = [date.fromisoformat(row["renewal_date"]) for row in good]
    assert any(r < today for r in renewals) and any(r > today + timedelta(180) for r in renewals)


def _zone_countries() -> dict[str, str]:
    table = (files("tzdata.zoneinfo") / "zone.tab").read_text(encoding="utf-8")
    zones = {}
    for line in table.splitlines():
        if line and not line.startswith("#"):
            country, _, zone, *_ = line.split("\t")
            zones[zone] = country
    return zones


def test_phones_are_valid_and_match_the_members_country(good: list[dict[str, str]]) -> None:
    country_of_zone = _zone_countries()
    styles: Counter[str] = Counter()
    for row in good:
        if not row["phone"]:
            continue
        number = phonenumbers.parse(row["phone"], row["phone_region"] or "US")
        assert phonenumbers.is_valid_number(number), row
        if row["phone"].startswith("+"):
            style = "e164" if " " not in row["phone"] else "international"
            layout = PhoneNumberFormat.E164 if style == "e164" else PhoneNumberFormat.INTERNATIONAL
        else:
            style = "national+region" if row["phone_region"] else "national"
            layout = PhoneNumberFormat.NATIONAL
        styles[style] += 1
        # Written the way phonenumbers itself writes that number.
        assert phonenumbers.format_number(number, layout) == row["phone"], row
        if row["timezone"]:
            region = phonenumbers.region_code_for_number(number)
            assert region == country_of_zone[row["timezone"]], row
    assert set(styles) == {"e164", "international", "national+region", "national"}
    assert sum(not row["phone"] for row in good) > 0  # some members gave no number


def test_bad_rows_have_one_planted_defect_each(
    dataset: GeneratedDataset, participants: list[dict[str, str]], events: list[dict[str, str]]
) -> None:
    assert 25 <= len(dataset.bad_lines) <= 80  # 1% of 5,000
    assert sum(dataset.bad_rows.values()) == len(dataset.bad_lines)
    ids_with_events = {event["external_id"] for event in events}
    first_line_of: dict[str, int] = {}
    for line, row in enumerate(participants, 2):
        first_line_of.setdefault(row["external_id"], line)
        kind = dataset.bad_lines.get(line)
        if kind == "duplicate_external_id":
            assert first_line_of[row["external_id"]] < line
            assert first_line_of[row["external_id"]] not in dataset.bad_lines
        elif kind == "empty_external_id":
            assert row["external_id"] == ""
        elif kind is not None:
            assert row["external_id"] not in ids_with_events  # bad rows get no events


def test_every_kind_of_defect_occurs(tmp_path: Path) -> None:
    generated = generate_dataset(tmp_path, participants=600, bad_row_rate=0.2, now=NOW)
    assert set(generated.bad_rows) == set(BAD_ROW_KINDS)
    assert 80 < len(generated.bad_lines) < 160


def test_events_are_consistent_with_their_participant(
    good: list[dict[str, str]], events: list[dict[str, str]]
) -> None:
    members = {row["external_id"]: row for row in good}
    by_member: dict[str, list[dict[str, str]]] = defaultdict(list)
    references = set()
    for event in events:
        assert event["external_id"] in members
        assert re.fullmatch(r"EVT-\d{9}", event["reference"])
        references.add(event["reference"])
        by_member[event["external_id"]].append(event)
    assert len(references) == len(events)
    assert {event["type"] for event in events} == {
        "login", "redemption", "renewal", "activation", "payment", "purchase",
        "points_earned", "complaint",
    }  # fmt: skip

    for external_id, member in members.items():
        history = by_member.get(external_id, [])
        if not member["last_activity_at"]:
            assert history == [], "never-activated members have no activity at all"
            continue
        times = [parse_utc(event["occurred_at"]) for event in history]
        assert times == sorted(times)
        assert history[0]["type"] == "activation"
        assert times[0] >= parse_utc(member["enrolled_at"])
        assert times[-1] == parse_utc(member["last_activity_at"]) <= NOW
        if member["status"] in ("inactive", "lapsed", "closed"):
            assert times[-1] < NOW - timedelta(days=90)  # their logins are old

    for event in events:
        kind, points, amount = event["type"], event["points"], event["amount"]
        if kind == "redemption":
            assert int(points) < 0 and amount == ""
        elif kind == "points_earned":
            assert int(points) > 0
        elif kind in ("purchase", "payment", "renewal"):
            assert re.fullmatch(r"\d+\.\d\d", amount) and float(amount) > 0
        else:
            assert points == amount == ""


def test_never_logged_in_share_and_inactive_share(good: list[dict[str, str]]) -> None:
    never = [row for row in good if not row["last_activity_at"]]
    assert 0.02 < len(never) / len(good) < 0.08
    recent = [row for row in never if parse_utc(row["enrolled_at"]) > NOW - timedelta(days=61)]
    assert recent  # new enrollees who never logged in
    stale = [
        row
        for row in good
        if row["last_activity_at"] and parse_utc(row["last_activity_at"]) < NOW - timedelta(90)
    ]
    assert 0.2 < len(stale) / len(good) < 0.5


@pytest.mark.parametrize("per_participant", [2.0, 10.0])
def test_events_per_participant_is_close_to_the_request(
    tmp_path: Path, per_participant: float
) -> None:
    generated = generate_dataset(
        tmp_path, participants=2000, events_per_participant=per_participant, now=NOW
    )
    good = generated.participant_rows - len(generated.bad_lines)
    assert generated.events / good == pytest.approx(per_participant, rel=0.15)
    _, rows = read_csv(generated.paths.events)
    assert len(rows) == generated.events


def test_arguments_are_checked(tmp_path: Path) -> None:
    bad: list[dict[str, Any]] = [
        {"participants": -1},
        {"participants": 1, "bad_row_rate": 1.5},
        {"participants": 1, "events_per_participant": -1.0},
    ]
    for kwargs in bad:
        with pytest.raises(ValueError):
            generate_dataset(tmp_path, now=NOW, **kwargs)
