"""SMS length (GSM-7 / UCS-2 segments) and the first-SMS opt-out notice."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.templates import has_opt_out_wording, sample_context, sms_size

from .helpers import renderer, write


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 1),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),  # 2 x 153
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # extension table: two septets each
        ("€" * 81, "GSM-7", 162, 2),
        ("[" * 80, "GSM-7", 160, 1),
        ("a" * 159 + "]", "GSM-7", 161, 2),
        ("é" * 160, "GSM-7", 160, 1),  # é is in the basic table
        ("Ç@£$¥" * 32, "GSM-7", 160, 1),
        ("ó" * 70, "UCS-2", 70, 1),  # ó is not: the whole message becomes UCS-2
        ("ó" * 71, "UCS-2", 71, 2),
        ("a" * 69 + "í", "UCS-2", 70, 1),
        ("a" * 70 + "í", "UCS-2", 71, 2),
        ("积" * 134, "UCS-2", 134, 2),  # 2 x 67
        ("积" * 135, "UCS-2", 135, 3),
        ("您有2500积分将于2026-04-15到期", "UCS-2", 22, 1),
        ("🎉" * 35, "UCS-2", 70, 1),  # outside the BMP: a surrogate pair each
        ("🎉" * 36, "UCS-2", 72, 2),
    ],
)
def test_segment_table(text: str, encoding: str, units: int, segments: int) -> None:
    size = sms_size(text)
    assert (size.encoding, size.units, size.segments, size.characters) == (
        encoding,
        units,
        segments,
        len(text),
    )


@given(st.text(alphabet="abc €[", max_size=400))
def test_gsm7_segments_match_the_septet_count(text: str) -> None:
    size = sms_size(text)
    septets = len(text) + text.count("€") + text.count("[")
    assert size.encoding == "GSM-7" and size.units == septets
    assert size.segments == (1 if septets <= 160 else -(-septets // 153))


def test_rendered_sms_reports_encoding_and_segments(tmp_path: Path) -> None:
    write(tmp_path, "sms/long.txt.j2", "{{ participant.first_name }} " + "x" * 150 + " STOP")
    english = renderer(tmp_path).render_sms(
        "long", sample_context("sms", "en"), "en", first_in_campaign=True
    )
    assert (english.encoding, english.segments) == ("GSM-7", 2)
    assert english.characters == len("Maria ") + 150 + len(" STOP")
    chinese = renderer(tmp_path).render_sms(
        "long", sample_context("sms", "zh"), "zh", first_in_campaign=True
    )
    assert (chinese.encoding, chinese.segments) == ("UCS-2", 3)  # 158 units / 67


def test_first_sms_gets_the_opt_out_notice_when_it_lacks_one(tmp_path: Path) -> None:
    write(tmp_path, "sms/plain.txt.j2", "{{ program.name }}: your points are waiting.\n")
    r = renderer(tmp_path)
    context = sample_context("sms")
    first = r.render_sms("plain", context, None, first_in_campaign=True)
    assert first.body == "Northwind Rewards: your points are waiting. Reply STOP to opt out."
    assert first.notice_added and first.characters == len(first.body)
    later = r.render_sms("plain", context, None, first_in_campaign=False)
    assert later.body == "Northwind Rewards: your points are waiting." and not later.notice_added
    off = r.render_sms("plain", context, None, first_in_campaign=True, opt_out_notice=False)
    assert not off.notice_added and "STOP" not in off.body


def test_opt_out_notice_in_the_members_language(tmp_path: Path) -> None:
    write(tmp_path, "sms/plain.txt.j2", "Hola.")
    write(tmp_path, "sms/plain.zh.txt.j2", "您好。")
    r = renderer(tmp_path)
    assert r.render_sms("plain", {}, "es-MX", first_in_campaign=True).body == (
        "Hola. Responda STOP para no recibir más."
    )
    assert r.render_sms("plain", {}, "zh", first_in_campaign=True).body == "您好。 回复STOP退订。"


def test_existing_opt_out_wording_is_not_repeated(tmp_path: Path) -> None:
    write(tmp_path, "sms/ok.txt.j2", "Points waiting. 回复STOP退订\n")
    sms = renderer(tmp_path).render_sms("ok", {}, None, first_in_campaign=True)
    assert sms.body == "Points waiting. 回复STOP退订" and not sms.notice_added


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Reply STOP to opt out", True),
        ("回复STOP退订", True),
        ("STOP", True),
        ("Reply stop to opt out", False),  # carriers match the upper-case keyword we promise
        ("Don't STOPWATCH", False),
        ("NONSTOP deals", False),
    ],
)
def test_opt_out_wording(body: str, expected: bool) -> None:
    assert has_opt_out_wording(body) is expected
