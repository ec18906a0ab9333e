"""Names, labels, dates, numbers and money in the member's customs (engine/locales.py)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from babel.numbers import format_decimal, parse_decimal
from hypothesis import given
from hypothesis import strategies as st

from engine.locales import (
    babel_locale,
    display_name,
    format_currency,
    format_date,
    format_number,
    label,
    written_in_cjk,
)


@pytest.mark.parametrize(
    ("first", "last", "locale", "expected"),
    [
        ("静", "杨", "zh", "杨静"),  # the "静 杨"
        ("静", "杨", "zh-Hant-TW", "杨静"),
        ("静", "杨", None, "杨静"),  # no locale: the script says how it is written
        ("太郎", "山田", "ja", "山田太郎"),
        ("민준", "김", "ko", "김민준"),
        ("Yang", "Wang", "zh", "Wang Yang"),  # romanised: family first, never "WangYang"
        ("Maria", "Garcia", "en", "Maria Garcia"),
        ("José", "Martínez López", "es-MX", "José Martínez López"),
        ("Maria", None, "en", "Maria"),
        (None, "杨", "zh", "杨"),
        (" Ana ", " Ruiz ", "es", "Ana Ruiz"),
        (None, None, "en", ""),
    ],
)
def test_display_name(
    first: str | None, last: str | None, locale: str | None, expected: str
) -> None:
    assert display_name(first, last, locale) == expected


names = st.text(st.characters(categories=["L"], exclude_characters=" "), min_size=1, max_size=12)


@given(first=names, last=names, locale=st.sampled_from(["en", "es-MX", "zh", "ja", "ko", None]))
def test_a_display_name_keeps_both_parts_in_the_order_of_the_locale(
    first: str, last: str, locale: str | None
) -> None:
    shown = display_name(first, last, locale)
    cjk = written_in_cjk(first) and written_in_cjk(last)
    family_first = locale in ("zh", "ja", "ko") or (locale is None and cjk)
    parts = [last, first] if family_first else [first, last]
    assert shown == ("" if cjk else " ").join(parts)


@pytest.mark.parametrize(
    ("kind", "value", "locale", "expected"),
    [
        ("tier", "gold", "zh", "金卡"),
        ("tier", "Gold", "zh-Hant", "金卡"),
        ("tier", "Silver", "es-MX", "Plata"),
        ("tier", "platinum", "en", "Platinum"),
        ("tier", "Platinum Elite Lifetime", "zh", "Platinum Elite Lifetime"),  # as imported
        ("tier", "gold", "fr", "Gold"),  # no fr labels: English
        ("tier", None, "zh", ""),
        ("status", "lapsed", "es", "vencida"),
        ("status", "closed", "zh", "已关闭"),
        ("status", "active", None, "active"),
    ],
)
def test_labels(kind: str, value: str | None, locale: str | None, expected: str) -> None:
    assert label(kind, value, locale) == expected


def test_an_unknown_label_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="'colour' is not one of tier, status"):
        label("colour", "red", "en")


@pytest.mark.parametrize(
    ("locale", "long", "medium"),
    [
        ("en", "November 7, 2026", "Nov 7, 2026"),
        ("es", "7 de noviembre de 2026", "7 nov 2026"),
        ("zh", "2026年11月7日", "2026年11月7日"),
        ("zh-Hant-TW", "2026年11月7日", "2026年11月7日"),
        ("ja", "2026年11月7日", "2026/11/07"),
        (None, "November 7, 2026", "Nov 7, 2026"),
        ("xx-unknown", "November 7, 2026", "Nov 7, 2026"),  # CLDR does not know it: English
    ],
)
def test_dates(locale: str | None, long: str, medium: str) -> None:
    day = date(2026, 11, 7)
    assert format_date(day, locale) == long
    assert format_date(datetime(2026, 11, 7, 23, 0), locale, "medium") == medium
    assert format_date(day, locale, "iso") == "2026-11-07"
    assert format_date(None, locale) == ""


def test_a_bad_date_or_style_is_an_error() -> None:
    with pytest.raises(TypeError, match="is not a date"):
        format_date("2026-11-07", "en")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="style 'tiny'"):
        format_date(date(2026, 11, 7), "en", "tiny")


@pytest.mark.parametrize(
    ("locale", "number", "money"),
    [
        ("en", "1,234,567", "$1,234.50"),
        ("es", "1.234.567", "1.234,50\xa0US$"),
        ("es-MX", "1,234,567", "USD1,234.50"),
        ("zh", "1,234,567", "US$1,234.50"),
        ("fr", "1\u202f234\u202f567", "1\u202f234,50\xa0$US"),
    ],
)
def test_numbers_and_currency(locale: str, number: str, money: str) -> None:
    assert format_number(1234567, locale) == number
    assert format_currency(Decimal("1234.5"), "USD", locale) == money
    assert format_number(None, locale) == format_currency(None, "USD", locale) == ""


def test_bad_numbers_and_currencies_are_errors() -> None:
    with pytest.raises(TypeError, match="is not a number"):
        format_number("12", "en")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="is not a number"):
        format_number(True, "en")
    with pytest.raises(ValueError, match="ISO 4217"):
        format_currency(1, "dollars", "en")


@given(
    value=st.integers(min_value=-(10**15), max_value=10**15),
    locale=st.sampled_from(["en", "es", "es-MX", "zh-Hans", "fr", "de-CH", "ja", "ko"]),
)
def test_a_formatted_number_reads_back_as_itself(value: int, locale: str) -> None:
    assert parse_decimal(format_number(value, locale), locale=babel_locale(locale)) == value


@given(
    value=st.integers(min_value=-(10**15), max_value=10**15),
    locale=st.sampled_from(
        ["en", "es", "es-MX", "zh-Hans", "fr", "de-CH", "sv", "pl", "hi", "en-IN", "ar", "fa"]
    ),
)
def test_whole_numbers_are_written_exactly_as_babel_writes_them(value: int, locale: str) -> None:
    # format_number groups whole numbers itself where CLDR's pattern is plain groups of three
    # (about 80 us a number saved); every locale, that path included, must agree with Babel.
    expected = format_decimal(value, locale=babel_locale(locale))
    assert format_number(value, locale) == expected
