"""A synthetic loyalty program: participants.csv and events.csv that look like a real feed.

Used by `campaign demo` (a few thousand members) and by the benchmarks (1,000,000 members and
10,000,000 events), so it streams: one participant is generated, written with its events, and
forgotten. Everything comes from one ``random.Random(seed)`` and the caller's ``now``; the same
seed and ``now`` give byte-identical files.

The files follow the participant import rules (engine/participants/): ISO 8601 dates, UTC
datetimes with an explicit ``+00:00``, phones in E.164, international or national format (national
ones carry ``phone_region`` unless they are North American numbers that the program's US region
reads correctly), consents yes/no/blank. About ``bad_row_rate`` of the participant rows carry
exactly one realistic defect (see ``BAD_ROW_KINDS``); the importer must reject those and nothing
else. Bad rows get no events.
"""

from __future__ import annotations

import bisect
import csv
import itertools
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import phonenumbers
from phonenumbers import PhoneNumber, PhoneNumberFormat

from engine.clock import ensure_utc

PARTICIPANT_COLUMNS = (
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
    "tier",
    "renewal_date",
    "account_manager",
    "consent_email",
    "consent_sms",
    "consent_call",
    # Program-specific columns: the importer keeps them as attributes.
    "home_store",
    "join_channel",
    "member_type",
)
EVENT_COLUMNS = ("external_id", "type", "occurred_at", "points", "amount", "reference")
EVENT_TYPES = (
    "activation",
    "login",
    "purchase",
    "points_earned",
    "redemption",
    "payment",
    "renewal",
    "complaint",
)
BAD_ROW_KINDS = (
    "invalid_email",
    "impossible_phone",
    "unknown_timezone",
    "bad_date",
    "negative_points",
    "empty_external_id",
    "duplicate_external_id",
)
STATUSES = ("active", "inactive", "lapsed", "closed")
TIERS = ("basic", "silver", "gold", "platinum")
LOCALES = ("en", "es", "zh")

_DAY = 86_400
_COL = {name: index for index, name in enumerate(PARTICIPANT_COLUMNS)}


@dataclass(frozen=True)
class DatasetPaths:
    participants: Path
    events: Path


@dataclass(frozen=True)
class GeneratedDataset:
    """What was written, including where the planted bad rows are (for tests and the demo)."""

    paths: DatasetPaths
    participant_rows: int
    events: int
    bad_rows: dict[str, int]  # kind -> count
    bad_lines: dict[int, str] = field(repr=False)  # participants.csv line (header = 1) -> kind


def write_dataset(
    folder: Path,
    *,
    participants: int,
    events_per_participant: float = 10.0,
    seed: int = 7,
    bad_row_rate: float = 0.01,
    now: datetime,
) -> DatasetPaths:
    """Write ``participants.csv`` and ``events.csv`` into ``folder``; see the module docstring."""
    return generate_dataset(
        folder,
        participants=participants,
        events_per_participant=events_per_participant,
        seed=seed,
        bad_row_rate=bad_row_rate,
        now=now,
    ).paths


def generate_dataset(
    folder: Path,
    *,
    participants: int,
    events_per_participant: float = 10.0,
    seed: int = 7,
    bad_row_rate: float = 0.01,
    now: datetime,
) -> GeneratedDataset:
    """Like write_dataset, and also report the counts and the line of every planted bad row."""
    if participants < 0:
        raise ValueError("participants must be >= 0")
    if not 0.0 <= bad_row_rate <= 1.0:
        raise ValueError("bad_row_rate must be between 0 and 1")
    if events_per_participant < 0:
        raise ValueError("events_per_participant must be >= 0")
    folder.mkdir(parents=True, exist_ok=True)
    paths = DatasetPaths(folder / "participants.csv", folder / "events.csv")
    generator = _Generator(random.Random(seed), ensure_utc(now), events_per_participant)
    bad_lines: dict[int, str] = {}
    bad_counts = dict.fromkeys(BAD_ROW_KINDS, 0)
    last_good_id: str | None = None
    events = 0
    with (
        paths.participants.open("w", encoding="utf-8", newline="", buffering=1 << 20) as pfile,
        paths.events.open("w", encoding="utf-8", newline="", buffering=1 << 20) as efile,
    ):
        pwriter = csv.writer(pfile, lineterminator="\n")
        ewriter = csv.writer(efile, lineterminator="\n")
        pwriter.writerow(PARTICIPANT_COLUMNS)
        ewriter.writerow(EVENT_COLUMNS)
        for seq in range(1, participants + 1):
            member = generator.member(seq)
            if generator.rng.random() < bad_row_rate:
                kind = generator.corrupt(member.row, last_good_id)
                bad_lines[seq + 1] = kind
                bad_counts[kind] += 1
                pwriter.writerow(member.row)
                continue
            pwriter.writerow(member.row)
            last_good_id = member.row[0]
            rows = generator.events(member)
            ewriter.writerows(rows)
            events += len(rows)
    return GeneratedDataset(
        paths=paths,
        participant_rows=participants,
        events=events,
        bad_rows={kind: n for kind, n in bad_counts.items() if n},
        bad_lines=bad_lines,
    )


# --------------------------------------------------------------------------- reference data


def _words(text: str) -> list[str]:
    return text.split()


# (display, ascii for the e-mail address)
_EN_FIRST = [(n, n.lower()) for n in _words(
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Chris Karen Daniel Nancy Matthew Lisa Anthony "
    "Betty Mark Sandra Emily Olivia Liam Noah Emma Ava Sophia Ethan Aiden Grace Owen Chloe"
)]  # fmt: skip
_EN_LAST = [(n, n.lower().replace("'", "")) for n in _words(
    "Smith Johnson Williams Brown Jones Miller Davis Wilson Anderson Taylor Thomas Moore Martin "
    "Jackson Thompson White Harris Clark Lewis Robinson Walker Young Allen King Wright Scott "
    "Hill Green Adams Baker Nelson Campbell Mitchell Roberts Carter Phillips Evans Turner "
    "O'Brien Murphy"
)]  # fmt: skip
_ES_FIRST = [
    ("José", "jose"), ("María", "maria"), ("Juan", "juan"), ("Carmen", "carmen"),
    ("Luis", "luis"), ("Ana", "ana"), ("Carlos", "carlos"), ("Lucía", "lucia"),
    ("Javier", "javier"), ("Sofía", "sofia"), ("Miguel", "miguel"), ("Isabel", "isabel"),
    ("Alejandro", "alejandro"), ("Elena", "elena"), ("Diego", "diego"), ("Paula", "paula"),
    ("Fernando", "fernando"), ("Marta", "marta"), ("Andrés", "andres"),
    ("Valentina", "valentina"), ("Jorge", "jorge"), ("Camila", "camila"),
    ("Ricardo", "ricardo"), ("Gabriela", "gabriela"), ("Raúl", "raul"), ("Daniela", "daniela"),
    ("Pablo", "pablo"), ("Verónica", "veronica"),
]  # fmt: skip
_ES_LAST = [
    ("García", "garcia"), ("Rodríguez", "rodriguez"), ("Martínez", "martinez"),
    ("Hernández", "hernandez"), ("López", "lopez"), ("González", "gonzalez"),
    ("Pérez", "perez"), ("Sánchez", "sanchez"), ("Ramírez", "ramirez"), ("Torres", "torres"),
    ("Flores", "flores"), ("Rivera", "rivera"), ("Gómez", "gomez"), ("Díaz", "diaz"),
    ("Cruz", "cruz"), ("Morales", "morales"), ("Reyes", "reyes"), ("Gutiérrez", "gutierrez"),
    ("Ortiz", "ortiz"), ("Castillo", "castillo"), ("Jiménez", "jimenez"), ("Ruiz", "ruiz"),
    ("Vargas", "vargas"), ("Romero", "romero"), ("Núñez", "nunez"), ("Peña", "pena"),
]  # fmt: skip
_ZH_GIVEN = [
    ("伟", "Wei"), ("芳", "Fang"), ("娜", "Na"), ("秀英", "Xiuying"), ("敏", "Min"),
    ("静", "Jing"), ("丽", "Li"), ("强", "Qiang"), ("磊", "Lei"), ("军", "Jun"), ("洋", "Yang"),
    ("勇", "Yong"), ("艳", "Yan"), ("杰", "Jie"), ("娟", "Juan"), ("涛", "Tao"), ("明", "Ming"),
    ("超", "Chao"), ("秀兰", "Xiulan"), ("霞", "Xia"), ("平", "Ping"), ("刚", "Gang"),
    ("桂英", "Guiying"), ("建华", "Jianhua"), ("志强", "Zhiqiang"), ("美玲", "Meiling"),
    ("家豪", "Jiahao"), ("怡君", "Yijun"),
]  # fmt: skip
_ZH_FAMILY = [
    ("王", "Wang"), ("李", "Li"), ("张", "Zhang"), ("刘", "Liu"), ("陈", "Chen"), ("杨", "Yang"),
    ("黄", "Huang"), ("赵", "Zhao"), ("吴", "Wu"), ("周", "Zhou"), ("徐", "Xu"), ("孙", "Sun"),
    ("马", "Ma"), ("朱", "Zhu"), ("胡", "Hu"), ("郭", "Guo"), ("何", "He"), ("高", "Gao"),
    ("林", "Lin"), ("罗", "Luo"), ("郑", "Zheng"), ("梁", "Liang"),
]  # fmt: skip
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org")
_ACCOUNT_MANAGERS = (
    "Dana Whitfield", "Marcus Lee", "Priya Raman", "Sofia Alvarez",
    "Tom Becker", "Chen Jing", "Rachel Kim", "Luis Ortega",
)  # fmt: skip
_REDEMPTIONS = (100, 250, 500, 1000, 2500, 5000)
_PAYMENTS_CENTS = (999, 1499, 1999, 2999, 4999)
_RENEWAL_FEE_CENTS = {"basic": 4900, "silver": 9900, "gold": 19900, "platinum": 49900}
_POINTS_SCALE = {"basic": 400, "silver": 1500, "gold": 4000, "platinum": 12000}


@dataclass(frozen=True)
class _Place:
    """Where members live: country, IANA zone, phone area codes (NANP only), local stores."""

    region: str
    timezone: str
    area_codes: tuple[int, ...]
    stores: tuple[str, ...]


_PLACES = {
    "us_east": _Place("US", "America/New_York", (212, 718, 917, 617, 215, 305, 404, 202),
                      ("New York Midtown", "Boston Back Bay", "Philadelphia Center City",
                       "Miami Brickell", "Atlanta Buckhead")),
    "us_central": _Place("US", "America/Chicago", (312, 773, 214, 713, 612, 512),
                         ("Chicago Loop", "Dallas Uptown", "Houston Galleria", "Austin Domain")),
    "us_mountain": _Place("US", "America/Denver", (303, 720, 801),
                          ("Denver LoDo", "Salt Lake City Downtown")),
    "us_arizona": _Place("US", "America/Phoenix", (602, 480), ("Phoenix Scottsdale",)),
    "us_pacific": _Place("US", "America/Los_Angeles", (213, 310, 415, 206, 503, 702),
                         ("Los Angeles Westside", "San Francisco Union Square",
                          "Seattle Downtown", "Las Vegas Strip")),
    "us_hawaii": _Place("US", "Pacific/Honolulu", (808,), ("Honolulu Ala Moana",)),
    "ca_east": _Place("CA", "America/Toronto", (416, 647, 514),
                      ("Toronto Yorkville", "Montreal Plateau")),
    "ca_west": _Place("CA", "America/Vancouver", (604, 778), ("Vancouver Robson",)),
    "gb": _Place("GB", "Europe/London", (), ("London Covent Garden", "Manchester Arndale")),
    "ie": _Place("IE", "Europe/Dublin", (), ("Dublin Grafton Street",)),
    "mx": _Place("MX", "America/Mexico_City", (),
                 ("Ciudad de México Polanco", "Guadalajara Andares")),
    "es": _Place("ES", "Europe/Madrid", (), ("Madrid Gran Vía", "Barcelona Passeig de Gràcia")),
    "co": _Place("CO", "America/Bogota", (), ("Bogotá Andino",)),
    "cn": _Place("CN", "Asia/Shanghai", (), ("Shanghai Nanjing Road", "Beijing Sanlitun")),
    "tw": _Place("TW", "Asia/Taipei", (), ("Taipei Xinyi",)),
    "hk": _Place("HK", "Asia/Hong_Kong", (), ("Hong Kong Causeway Bay",)),
    "sg": _Place("SG", "Asia/Singapore", (), ("Singapore Orchard",)),
}  # fmt: skip

# Where each language community lives (weights in percent).
_HOMES = {
    "en": {"us_east": 26, "us_central": 16, "us_mountain": 5, "us_arizona": 3, "us_pacific": 17,
           "us_hawaii": 1, "ca_east": 7, "ca_west": 3, "gb": 14, "ie": 3, "sg": 5},
    "es": {"us_east": 10, "us_central": 12, "us_pacific": 14, "us_arizona": 4, "mx": 30,
           "es": 20, "co": 10},
    "zh": {"us_east": 10, "us_pacific": 15, "ca_west": 5, "cn": 30, "tw": 15, "hk": 15, "sg": 10},
}  # fmt: skip

# Event mix after activation (renewals are placed on the renewal anniversaries instead).
_EVENT_MIX = {
    "login": 45, "purchase": 17, "points_earned": 17, "redemption": 9, "payment": 8,
    "complaint": 2,
}  # fmt: skip

# Share of members by profile, and how busy each profile is relative to the others. The
# event budget per member is scaled from these so the file averages events_per_participant.
_STATUS_WEIGHTS = {"active": 70, "inactive": 14, "lapsed": 10, "closed": 6}
_NEW_SHARE = 0.08  # of active members: enrolled in the last 60 days
_NEW_NEVER_ACTIVE = 0.5  # of new members: never logged in
_OLD_NEVER_ACTIVE = 0.10  # of inactive members: enrolled long ago, never activated
_DORMANT_SHARE = 0.12  # of established active members: no activity for 90+ days
_BUSY = {"new": 0.3, "active": 1.4, "dormant": 0.8, "inactive": 0.6, "lapsed": 0.7, "closed": 0.4}

# Realistic defects, each surely rejected by the importer (checked by the tests).
_BAD_EMAILS = ("maria.garcia@@example.com", "john smith@example.com", "li.wei.example.com",
               "ana.lopez@", "@example.net")  # fmt: skip
_BAD_PHONES = (("+1 012 345 6789", ""), ("555-01", "US"), ("+44 20 7946", ""),
               ("12345678901234567", "US"), ("+86 123", ""))  # fmt: skip
_BAD_ZONES = ("America/Atlantis", "Europe/Springfield", "US/Pacifc", "GMT+25")
_BAD_DATES = (("enrolled_at", "2024-02-30T10:00:00+00:00"), ("renewal_date", "31/12/2026"),
              ("points_expire_at", "2026-13-01"), ("last_activity_at", "last Tuesday"))  # fmt: skip
_BAD_POINTS = (("points_balance", "-150"), ("points_expiring", "-20"))


def _cumulative(weights: Sequence[float]) -> list[float]:
    return list(itertools.accumulate(weights))


class _Picker:
    """Weighted choice with a precomputed cumulative table (random.choices rebuilds it)."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.values = list(weights)
        self.cumulative = _cumulative(list(weights.values()))
        self.total = self.cumulative[-1]

    def __call__(self, rng: random.Random) -> str:
        return self.values[bisect.bisect_right(self.cumulative, rng.random() * self.total)]


_UTC_FORMAT = "%Y-%m-%dT%H:%M:%S+00:00"
_strftime, _gmtime = time.strftime, time.gmtime


def _utc(ts: int) -> str:
    return _strftime(_UTC_FORMAT, _gmtime(ts))


def _day(ts: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _cents(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


class _Phones:
    """Valid phone numbers for a place, in the formats real member files mix.

    Each place gets a few number prefixes (area code + exchange for North America; the mobile
    example number's leading digits elsewhere); a number is prefix + four random digits, checked
    with phonenumbers.is_valid_number_for_region (valid, and in the member's country) before
    use. Formatting ~10 us a number adds up at a million members, so each prefix's national and
    international layouts are formatted once and the last four digits filled in.
    """

    def __init__(self, rng: random.Random, place: _Place) -> None:
        self.place = place
        self.country_code = phonenumbers.country_code_for_region(place.region)
        self.prefixes: list[tuple[str, str, str]] = []  # (digits, international, national)
        attempts = 0
        while len(self.prefixes) < 12:
            attempts += 1
            if attempts > 10_000:
                raise RuntimeError(f"cannot build phone numbers for {place.region}")
            prefix = self._candidate_prefix(rng)
            if any(prefix == known for known, _, _ in self.prefixes):
                continue
            if self.valid(prefix + f"{rng.randrange(10000):04d}"):
                sample = self._number(prefix + "0000")
                self.prefixes.append(
                    (
                        prefix,
                        _layout(
                            phonenumbers.format_number(sample, PhoneNumberFormat.INTERNATIONAL)
                        ),
                        _layout(phonenumbers.format_number(sample, PhoneNumberFormat.NATIONAL)),
                    )
                )

    def _candidate_prefix(self, rng: random.Random) -> str:
        if self.place.area_codes:
            # NANP exchange codes start 2-9 and are not N11.
            exchange = rng.randrange(200, 1000)
            while exchange % 100 == 11 or exchange == 555:
                exchange = rng.randrange(200, 1000)
            return f"{rng.choice(self.place.area_codes)}{exchange}"
        example = phonenumbers.example_number_for_type(
            self.place.region, phonenumbers.PhoneNumberType.MOBILE
        )
        if example is None:
            raise RuntimeError(f"phonenumbers has no mobile example for {self.place.region}")
        nsn = phonenumbers.national_significant_number(example)
        keep = 2 if len(nsn) <= 8 else 3
        middle = "".join(str(rng.randrange(10)) for _ in range(len(nsn) - keep - 4))
        return nsn[:keep] + middle

    def _number(self, nsn: str) -> PhoneNumber:
        return PhoneNumber(country_code=self.country_code, national_number=int(nsn))

    def valid(self, nsn: str) -> bool:
        return bool(phonenumbers.is_valid_number_for_region(self._number(nsn), self.place.region))

    def number(self, rng: random.Random) -> tuple[str, str, str]:
        """(E.164, international, national) spellings of one new valid number."""
        while True:
            prefix, international, national = rng.choice(self.prefixes)
            suffix = f"{rng.randrange(10000):04d}"
            if self.valid(prefix + suffix):
                return (
                    f"+{self.country_code}{prefix}{suffix}",
                    international.format(*suffix),
                    national.format(*suffix),
                )


def _layout(formatted: str) -> str:
    """A format string from a formatted number ending in 0000: its last four digits -> {0}..{3}."""
    chars = list(formatted.replace("{", "{{").replace("}", "}}"))
    digits = [index for index, char in enumerate(chars) if char.isdigit()][-4:]
    for position, index in enumerate(digits):
        chars[index] = f"{{{position}}}"
    return "".join(chars)


@dataclass
class _Member:
    row: list[str]
    profile: str  # key of _BUSY, or "never" for members with no activity at all
    tier: str
    enrolled: int
    last: int  # last activity (epoch seconds); == enrolled for "never"
    renewal: int


class _Generator:
    def __init__(self, rng: random.Random, now: datetime, events_per_participant: float) -> None:
        self.rng = rng
        self.now = int(now.timestamp())
        self.reference = itertools.count(1)
        self.locale = _Picker({"en": 65, "es": 20, "zh": 15})
        self.homes = {locale: _Picker(weights) for locale, weights in _HOMES.items()}
        self.phones = {key: _Phones(rng, place) for key, place in _PLACES.items()}
        self.status = _Picker(dict(_STATUS_WEIGHTS))
        self.tier = _Picker({"basic": 55, "silver": 25, "gold": 14, "platinum": 6})
        self.event_type = _Picker(dict(_EVENT_MIX))
        self.join_channel = _Picker(
            {"web": 35, "app": 30, "store": 25, "call_center": 5, "partner": 5}
        )
        self.member_type = _Picker({"individual": 75, "family": 20, "business": 5})
        self.budget = _event_budget(events_per_participant)

    # ------------------------------------------------------------------ participants

    def member(self, seq: int) -> _Member:
        rng, now = self.rng, self.now
        locale = self.locale(rng)
        place_key = self.homes[locale](rng)
        place = _PLACES[place_key]
        first, last, email_local = self._name(locale)
        status = self.status(rng)
        profile = status
        if status == "active":
            if rng.random() < _NEW_SHARE:
                profile = "never" if rng.random() < _NEW_NEVER_ACTIVE else "new"
            elif rng.random() < _DORMANT_SHARE:
                profile = "dormant"
        elif status == "inactive" and rng.random() < _OLD_NEVER_ACTIVE:
            profile = "never_old"

        if profile in ("new", "never"):
            enrolled = now - rng.randrange(60 * _DAY)
        else:
            enrolled = now - rng.randrange(91 * _DAY, 6 * 365 * _DAY)
        last_activity = self._last_activity(profile, enrolled)

        tier = self.tier(rng)
        balance = (
            0 if rng.random() < 0.06 else int((rng.paretovariate(1.3) - 1) * _POINTS_SCALE[tier])
        )
        balance = min(balance, 2_000_000)
        expiring, expire_at = 0, ""
        if balance > 0 and rng.random() < 0.3:
            expiring = max(1, int(balance * rng.uniform(0.05, 0.6)))
            days = rng.randint(1, 30) if rng.random() < 0.4 else rng.randint(31, 180)
            expire_at = _day(now + days * _DAY)
        renewal = (
            now
            + _DAY
            * {
                "active": rng.randint(-20, 365),
                "inactive": rng.randint(-200, 365),
                "lapsed": -rng.randint(1, 365),
                "closed": -rng.randint(1, 365),
            }[status]
        )
        manager = ""
        if tier == "platinum" or (tier == "gold" and rng.random() < 0.5):
            manager = rng.choice(_ACCOUNT_MANAGERS)

        email = ""
        if rng.random() >= 0.03:
            email = f"{email_local}{seq}@{rng.choice(_EMAIL_DOMAINS)}"
        phone, phone_region = self._phone(place_key)
        consent_email = _consent(rng, opted_out=0.05, blank=0.02)
        consent_sms = _consent(rng, opted_out=0.10, blank=0.18) if phone else ""
        consent_call = _consent(rng, opted_out=0.04, blank=0.16) if phone else ""

        row = [
            f"NW{seq:07d}",
            first,
            last,
            email,
            phone,
            phone_region,
            "" if rng.random() < 0.04 else place.timezone,
            locale,
            status,
            _utc(enrolled),
            "" if profile.startswith("never") else _utc(last_activity),
            str(balance),
            str(expiring),
            expire_at,
            tier,
            _day(renewal),
            manager,
            consent_email,
            consent_sms,
            consent_call,
            rng.choice(place.stores),
            self.join_channel(rng),
            self.member_type(rng),
        ]
        return _Member(row, profile, tier, enrolled, last_activity, renewal)

    def _name(self, locale: str) -> tuple[str, str, str]:
        rng = self.rng
        if locale == "en":
            (first, f_ascii), (last, l_ascii) = rng.choice(_EN_FIRST), rng.choice(_EN_LAST)
        elif locale == "es":
            (first, f_ascii), (last, l_ascii) = rng.choice(_ES_FIRST), rng.choice(_ES_LAST)
            if rng.random() < 0.25:  # two surnames, as on a Spanish ID
                second, s_ascii = rng.choice(_ES_LAST)
                last, l_ascii = f"{last} {second}", f"{l_ascii}{s_ascii}"
        else:
            (given, given_py), (family, family_py) = rng.choice(_ZH_GIVEN), rng.choice(_ZH_FAMILY)
            l_ascii = family_py.lower()
            if rng.random() < 0.5:  # the member's name as written in Chinese characters
                first, last, f_ascii = given, family, given_py.lower()
            elif rng.random() < 0.3:  # an English first name, common in the diaspora
                first, f_ascii = rng.choice(_EN_FIRST)
                last = family_py
            else:
                first, last, f_ascii = given_py, family_py, given_py.lower()
        style = rng.random()
        if style < 0.5:
            local = f"{f_ascii}.{l_ascii}"
        elif style < 0.8:
            local = f"{f_ascii[0]}{l_ascii}"
        else:
            local = f"{f_ascii}_{l_ascii[:3]}"
        return first, last, local

    def _last_activity(self, profile: str, enrolled: int) -> int:
        rng, now = self.rng, self.now
        if profile.startswith("never"):
            return enrolled
        if profile == "new":
            return rng.randint(enrolled, now)
        if profile == "active":
            low, high = now - 45 * _DAY, now
        elif profile == "closed":
            low, high = now - 3 * 365 * _DAY, now - 120 * _DAY
        else:  # dormant, inactive, lapsed: nothing in the last 90 days
            low, high = now - 2 * 365 * _DAY, now - 91 * _DAY
        low = max(low, enrolled + _DAY)
        return rng.randint(low, max(low, high))

    def _phone(self, place_key: str) -> tuple[str, str]:
        rng = self.rng
        if rng.random() < 0.04:
            return "", ""
        phones = self.phones[place_key]
        e164, international, national = phones.number(rng)
        style = rng.random()
        if style < 0.45:
            return e164, ""
        if style < 0.55:
            return international, ""
        if style < 0.65 and phones.country_code == 1:
            return national, ""  # read with the program's region (US), as real files do
        return national, phones.place.region

    # ------------------------------------------------------------------ defects

    def corrupt(self, row: list[str], last_good_id: str | None) -> str:
        """Give ``row`` exactly one defect; returns its kind."""
        rng = self.rng
        kinds = BAD_ROW_KINDS if last_good_id is not None else BAD_ROW_KINDS[:-1]
        kind = rng.choice(kinds)
        if kind == "invalid_email":
            row[_COL["email"]] = rng.choice(_BAD_EMAILS)
        elif kind == "impossible_phone":
            row[_COL["phone"]], row[_COL["phone_region"]] = rng.choice(_BAD_PHONES)
        elif kind == "unknown_timezone":
            row[_COL["timezone"]] = rng.choice(_BAD_ZONES)
        elif kind == "bad_date":
            column, value = rng.choice(_BAD_DATES)
            row[_COL[column]] = value
        elif kind == "negative_points":
            column, value = rng.choice(_BAD_POINTS)
            row[_COL[column]] = value
        elif kind == "empty_external_id":
            row[0] = ""
        else:
            assert last_good_id is not None
            row[0] = last_good_id
        return kind

    # ------------------------------------------------------------------ events

    def events(self, member: _Member) -> list[list[str]]:
        """The member's activity history in time order; none for never-activated members.

        The hot loop of a 10,000,000-event file, hence the local names and plain arithmetic
        in place of randint (about twice as fast).
        """
        if member.profile.startswith("never"):
            return []
        rng = self.rng
        random_ = rng.random
        external_id = member.row[0]
        activated = min(member.enrolled + rng.randint(300, 3 * _DAY), member.last)
        extra = int(rng.expovariate(1.0) * self.budget * _BUSY[member.profile] + 0.5)
        # At least the latest login, which is what last_activity_at records.
        extra = max(1, extra)
        timeline: list[tuple[int, str]] = []
        # Yearly renewals on the anniversaries of the renewal date, while active.
        renewal = member.renewal
        if member.row[_COL["status"]] == "lapsed":
            renewal -= 365 * _DAY  # the latest renewal date is the one they let pass
        while renewal > member.last:
            renewal -= 365 * _DAY
        while renewal > activated and len(timeline) < extra - 1:
            timeline.append((renewal, "renewal"))
            renewal -= 365 * _DAY
        span = member.last - activated + 1
        kinds, cumulative, total = (
            self.event_type.values,
            self.event_type.cumulative,
            self.event_type.total,
        )
        for _ in range(extra - 1 - len(timeline)):
            kind = kinds[bisect.bisect_right(cumulative, random_() * total)]
            timeline.append((activated + int(random_() * span), kind))
        timeline.sort()
        timeline.append((member.last, "login"))  # last_activity_at is the latest event
        reference = self.reference
        rows = [[external_id, "activation", _utc(activated), "", "", f"EVT-{next(reference):09d}"]]
        for ts, kind in timeline:
            points = amount = ""
            if kind == "login":  # the most common kind; nothing more to draw
                pass
            elif kind == "purchase":
                amount = _cents(max(199, int(rng.lognormvariate(3.4, 0.8) * 100)))
            elif kind == "points_earned":
                points = str(max(1, int(rng.lognormvariate(4.0, 1.0))))
            elif kind == "redemption":
                points = str(-_REDEMPTIONS[int(random_() * len(_REDEMPTIONS))])
            elif kind == "payment":
                amount = _cents(_PAYMENTS_CENTS[int(random_() * len(_PAYMENTS_CENTS))])
            elif kind == "renewal":
                amount = _cents(_RENEWAL_FEE_CENTS[member.tier])
            rows.append(
                [external_id, kind, _strftime(_UTC_FORMAT, _gmtime(ts)), points, amount,
                 f"EVT-{next(reference):09d}"]
            )  # fmt: skip
        return rows


def _consent(rng: random.Random, *, opted_out: float, blank: float) -> str:
    draw = rng.random()
    if draw < opted_out:
        return "no"
    if draw < opted_out + blank:
        return ""
    return "yes"


def _event_budget(events_per_participant: float) -> float:
    """Mean extra events (beyond activation) for a profile of busyness 1.0.

    A member's extra events are max(1, round(budget * busy * Exp(1))), so the expected number
    per good row is sum over profiles of share * (1 + _extra_mean(budget * busy)); solved for
    the budget by bisection. Below the floor (activation + one login each) it returns 0.
    """
    total = sum(_STATUS_WEIGHTS.values())
    share = {status: weight / total for status, weight in _STATUS_WEIGHTS.items()}
    active_new = share["active"] * _NEW_SHARE
    active_old = share["active"] * (1 - _NEW_SHARE)
    profiles = {
        "new": active_new * (1 - _NEW_NEVER_ACTIVE),
        "active": active_old * (1 - _DORMANT_SHARE),
        "dormant": active_old * _DORMANT_SHARE,
        "inactive": share["inactive"] * (1 - _OLD_NEVER_ACTIVE),
        "lapsed": share["lapsed"],
        "closed": share["closed"],
    }

    def expected(budget: float) -> float:
        return sum(w * (1 + _extra_mean(budget * _BUSY[p])) for p, w in profiles.items())

    low, high = 0.0, 1.0
    if expected(low) >= events_per_participant:
        return 0.0
    while expected(high) < events_per_participant:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if expected(middle) < events_per_participant else (low, middle)
    return (low + high) / 2


def _extra_mean(scale: float) -> float:
    """E[max(1, round(scale * X))] for X ~ Exp(1), rounding half up."""
    if scale < 0.02:
        return 1.0
    rounded = math.exp(0.5 / scale) / math.expm1(1 / scale)  # sum over k>=1 of P(sX >= k-1/2)
    return rounded + 1 - math.exp(-0.5 / scale)  # P(round(sX) == 0) turned into ones
