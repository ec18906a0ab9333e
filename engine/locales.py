"""A member's language and customs: how their name is written, what their tier and status are
called, and how dates, numbers and money look, all decided from their locale (BCP-47, as
imported). Formatting is CLDR's, through Babel, never by hand.

Pure: no database, no clock. Babel is imported on first use so that commands which format
nothing do not pay for loading it.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from babel import Locale

# Languages whose names are written family name first (and, in their own scripts, without a
# space between the two parts): 杨静, 山田太郎, 김민준.
FAMILY_NAME_FIRST = frozenset({"zh", "ja", "ko"})
# The locale a member without one (or with one CLDR does not know) is formatted in: the
# templates without a locale suffix are English.
DEFAULT_LOCALE = "en"


def primary_language(locale: str | None) -> str | None:
    """'zh-Hant-TW' -> 'zh'; None or '' -> None."""
    return re.split(r"[-_]", locale, maxsplit=1)[0].lower() if locale else None


def _is_cjk_char(char: str) -> bool:
    name = unicodedata.name(char, "")
    return name.startswith(("CJK ", "HIRAGANA", "KATAKANA", "HANGUL"))


def written_in_cjk(text: str) -> bool:
    """True when every letter of ``text`` is Han, kana or Hangul (spaces and dots aside)."""
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and all(_is_cjk_char(c) for c in letters)


def display_name(first: str | None, last: str | None, locale: str | None) -> str:
    """A member's name as their own customs write it: the one function every list, script,
    template and report uses.

    Family name first for zh, ja and ko, and for a member with no locale whose name is written
    in Han, kana or Hangul; given name first otherwise. The parts are joined without a space
    when both are written in those scripts ("杨静"), with one otherwise ("Wang Yang")."""
    given, family = (first or "").strip(), (last or "").strip()
    if not given or not family:
        return given or family
    language = primary_language(locale)
    cjk = written_in_cjk(given) and written_in_cjk(family)
    family_first = language in FAMILY_NAME_FIRST or (language is None and cjk)
    parts = (family, given) if family_first else (given, family)
    return ("" if cjk else " ").join(parts)


# --------------------------------------------------------------------------- labels

# Tier and status labels per language. A tier a program names otherwise is shown as imported.
_LABELS: dict[str, dict[str, dict[str, str]]] = {
    "tier": {
        "en": {
            "basic": "Basic",
            "standard": "Standard",
            "bronze": "Bronze",
            "silver": "Silver",
            "gold": "Gold",
            "platinum": "Platinum",
            "diamond": "Diamond",
        },
        "es": {
            "basic": "Básico",
            "standard": "Estándar",
            "bronze": "Bronce",
            "silver": "Plata",
            "gold": "Oro",
            "platinum": "Platino",
            "diamond": "Diamante",
        },
        "zh": {
            "basic": "普通",
            "standard": "标准",
            "bronze": "铜卡",
            "silver": "银卡",
            "gold": "金卡",
            "platinum": "白金卡",
            "diamond": "钻石卡",
        },
    },
    "status": {
        "en": {"active": "active", "inactive": "inactive", "lapsed": "lapsed", "closed": "closed"},
        "es": {
            "active": "activa",
            "inactive": "inactiva",
            "lapsed": "vencida",
            "closed": "cerrada",
        },
        "zh": {"active": "有效", "inactive": "不活跃", "lapsed": "已过期", "closed": "已关闭"},
    },
}
LABEL_KINDS = tuple(_LABELS)
LABEL_LANGUAGES = ("en", "es", "zh")


def label(kind: str, value: str | None, locale: str | None) -> str:
    """The word for a tier or a status in the member's language ('gold', zh -> '金卡'); a value
    with no translation (a program's own tier name) as imported; None -> ''."""
    if kind not in _LABELS:
        raise ValueError(f"label: {kind!r} is not one of {', '.join(LABEL_KINDS)}")
    if value is None:
        return ""
    words = _LABELS[kind].get(primary_language(locale) or DEFAULT_LOCALE, _LABELS[kind]["en"])
    return words.get(value.strip().lower(), value)


# --------------------------------------------------------------------------- formatting


@lru_cache(maxsize=256)
def babel_locale(locale: str | None) -> Locale:
    """The CLDR locale for a BCP-47 tag: the tag itself, else its language, else English."""
    from babel import Locale, UnknownLocaleError

    for candidate in (locale, primary_language(locale)):
        if not candidate:
            continue
        try:
            return Locale.parse(candidate.replace("_", "-"), sep="-")
        except (UnknownLocaleError, ValueError):
            continue
    return Locale.parse(DEFAULT_LOCALE)


def format_date(value: date | datetime | None, locale: str | None, style: str = "long") -> str:
    """'November 7, 2026' (en), '7 de noviembre de 2026' (es), '2026年11月7日' (zh); ``style``
    is a CLDR width (short, medium, long, full) or 'iso'; None -> ''."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.date()
    if not isinstance(value, date):
        raise TypeError(f"date: {value!r} is not a date")
    if style == "iso":
        return value.isoformat()
    if style not in ("short", "medium", "long", "full"):
        raise ValueError(f"date: style {style!r} is not short, medium, long, full or iso")
    return _cldr_date(value, style, locale)


# Babel takes 20-150 us a value; the sender renders thousands of messages a second, whose
# dates and numbers repeat (renewal dates, point balances), so results are remembered.
@lru_cache(maxsize=65536)
def _cldr_date(value: date, style: str, locale: str | None) -> str:
    from babel.dates import format_date as cldr_date

    return str(cldr_date(value, style, locale=babel_locale(locale)))


@lru_cache(maxsize=65536)
def _cldr_number(kind: str, value: int | float | Decimal, locale: str | None) -> str:
    from babel.numbers import format_decimal

    return str(format_decimal(value, locale=babel_locale(locale)))


def _check_number(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise TypeError(f"{what}: {value!r} is not a number")


@lru_cache(maxsize=256)
def _plain_int_symbols(locale: str | None) -> tuple[str, str] | None:
    """(group, minus) when Babel writes the locale's whole numbers as groups of three in Latin
    digits (en, es, zh, fr...), read off Babel's own output; else None (hi groups by two, ar
    has its own digits: those stay Babel's)."""
    from babel.numbers import format_decimal

    cldr = babel_locale(locale)
    grouped = re.fullmatch(r"1(\D+)234\1567", format_decimal(1234567, locale=cldr))
    negative = format_decimal(-1, locale=cldr)
    if grouped is None or not negative.endswith("1") or negative[:-1].isdigit():
        return None
    return grouped.group(1), negative[:-1]


def format_number(value: int | float | Decimal | None, locale: str | None) -> str:
    """1234567 -> '1,234,567' (en, es-MX, zh), '1.234.567' (es), '1 234 567' (fr); None -> ''."""
    if value is None:
        return ""
    _check_number(value, "number")
    if type(value) is int:
        # Point balances are all different, so the cache below rarely helps them, and Babel
        # takes about 80 us a number: with the locale's symbols, Python groups the digits.
        # (tests/locales checks this path against Babel for many locales.)
        symbols = _plain_int_symbols(locale)
        if symbols is not None:
            group, minus = symbols
            digits = f"{abs(value):,}".replace(",", group)
            return minus + digits if value < 0 else digits
    return _cldr_number(type(value).__name__, value, locale)  # the type: 1, 1.0 and Decimal('1.0')


def format_currency(value: int | float | Decimal | None, currency: str, locale: str | None) -> str:
    """12.5, 'USD' -> '$12.50' (en), 'US$12.50' (zh), '12,50 US$' (es); None -> ''."""
    if value is None:
        return ""
    _check_number(value, "currency")
    if not re.fullmatch(r"[A-Z]{3}", currency or ""):
        raise ValueError(f"currency: {currency!r} is not an ISO 4217 code such as USD")
    from babel.numbers import format_currency as cldr_currency

    return str(cldr_currency(value, currency, locale=babel_locale(locale)))
