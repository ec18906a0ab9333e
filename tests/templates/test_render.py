"""The renderer: shipped templates, locale fallback, strictness, sandbox, compliance footer."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import pytest

from engine.templates import (
    LIST_UNSUBSCRIBE_POST,
    TemplateError,
    locale_candidates,
    message_context,
    sample_context,
)

from .helpers import POSTAL, PUBLIC_URL, SIGNER, TEMPLATES, renderer, write

LOCALES = [None, "en", "es", "zh"]


def _names(folder: str) -> list[str]:
    """Template names of a channel folder (default-locale files only)."""
    names = set()
    for path in (TEMPLATES / folder).glob("*.j2"):
        parts = path.name.split(".")
        if len(parts) == 3:  # <name>.<part>.j2; locale variants have four parts
            names.add(parts[0])
    return sorted(names)


def _has_variant(folder: str, name: str, locale: str | None, part: str) -> bool:
    return locale is not None and (TEMPLATES / folder / f"{name}.{locale}.{part}.j2").is_file()


def email_context(locale: str | None = None, participant_id: int = 7) -> dict[str, object]:
    context = sample_context("email", locale)
    context["unsubscribe_url"] = renderer().unsubscribe_url(participant_id)
    context.pop("postal_address")  # the renderer adds its own
    return context


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", _names("email"))
def test_every_shipped_email_renders_in_every_locale(name: str, locale: str | None) -> None:
    r = renderer()
    email = r.render_email(name, email_context(locale), locale)
    assert email.subject and "\n" not in email.subject
    assert email.html is not None and email.text is not None
    # The shipped templates carry the link and address themselves: no footer is needed.
    assert not email.footer_added
    url = email_context(locale)["unsubscribe_url"]
    assert url in email.text and url in email.html
    assert POSTAL in email.text and POSTAL.replace("&", "&amp;") in email.html
    default = r.render_email(name, email_context(locale), None)
    if _has_variant("email", name, locale, "html"):
        assert email.html != default.html
    elif locale in (None, "en"):
        assert (email.subject, email.html, email.text) == (
            default.subject,
            default.html,
            default.text,
        )


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", _names("sms"))
def test_every_shipped_sms_renders_in_every_locale(name: str, locale: str | None) -> None:
    sms = renderer().render_sms(name, sample_context("sms", locale), locale, first_in_campaign=True)
    assert sms.body and not sms.notice_added  # every shipped SMS says how to opt out
    assert "Northwind Rewards" in sms.body
    if locale in (None, "en") or _has_variant("sms", name, locale, "txt"):
        assert sms.segments <= 2, sms
    # else: the English text with a Chinese name is UCS-2 and may take a third segment;
    # that is what the member gets, and what `validate` cannot know (it renders each file
    # for a member of the file's own locale).


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", _names("calls"))
def test_every_shipped_call_script_renders_in_every_locale(name: str, locale: str | None) -> None:
    script = renderer().render_call_script(name, sample_context("call", locale), locale)
    context = sample_context("call", locale)
    assert context["campaign"].name in script  # type: ignore[attr-defined]


def test_locale_candidates() -> None:
    assert locale_candidates("zh-Hant-TW") == ("zh-Hant-TW", "zh-Hant", "zh")
    assert locale_candidates("es_MX") == ("es-MX", "es")
    assert locale_candidates(None) == ()


def test_locale_fallback_part_by_part(tmp_path: Path) -> None:
    write(tmp_path, "email/hi.subject.j2", "Hello")
    write(tmp_path, "email/hi.html.j2", "<p>en {{ unsubscribe_url }} {{ postal_address }}</p>")
    write(tmp_path, "email/hi.txt.j2", "en {{ unsubscribe_url }} {{ postal_address }}")
    write(tmp_path, "email/hi.zh.subject.j2", "你好")
    write(tmp_path, "email/hi.zh-Hant.subject.j2", "妳好")
    write(tmp_path, "email/hi.zh.txt.j2", "zh {{ unsubscribe_url }} {{ postal_address }}")
    r = renderer(tmp_path)
    context = {"unsubscribe_url": "https://x.example/u/1"}
    hant = r.render_email("hi", context, "zh-Hant-TW")
    assert hant.subject == "妳好"  # zh-Hant-TW -> zh-Hant
    assert hant.text is not None and hant.text.startswith("zh ")  # -> zh
    assert hant.html == "<p>en https://x.example/u/1 " + POSTAL.replace("&", "&amp;") + "</p>"
    hans = r.render_email("hi", context, "zh-Hans")
    assert hans.subject == "你好"
    french = r.render_email("hi", context, "fr-CA")
    assert french.subject == "Hello" and french.text is not None and french.text.startswith("en ")


def test_missing_template_is_a_clean_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"sms/nope\.txt\.j2: template not found"):
        renderer(tmp_path).render_sms("nope", {}, "es", first_in_campaign=False)


def test_undefined_variable_names_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "calls/typo.txt.j2",
        "Call script\n\n{{ participant.first_name }} {{ participant.frist_name }}\n",
    )
    with pytest.raises(TemplateError) as caught:
        renderer(tmp_path).render_call_script("typo", sample_context("call"), None)
    assert (caught.value.path, caught.value.line) == (str(path), 3)
    assert "'participant' has no attribute 'frist_name'" in str(caught.value)
    assert str(caught.value).startswith(f"{path}:3: ")


def test_undefined_top_level_name_inside_an_if(tmp_path: Path) -> None:
    path = write(tmp_path, "sms/x.txt.j2", "Hi\n{% if true %}\n  {{ coupon_code }}\n{% endif %}\n")
    with pytest.raises(TemplateError) as caught:
        renderer(tmp_path).render_sms("x", sample_context("sms"), None, first_in_campaign=False)
    assert (caught.value.path, caught.value.line) == (str(path), 3)
    assert "coupon_code" in caught.value.problem


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "sms/broken.txt.j2", "Hi\n{{ participant.first_name }\n")
    with pytest.raises(TemplateError) as caught:
        renderer(tmp_path).render_sms("broken", {}, None, first_in_campaign=False)
    assert (caught.value.path, caught.value.line) == (str(path), 2)
    assert "syntax error" in caught.value.problem


@pytest.mark.parametrize(
    "expression",
    [
        "''.__class__",
        "''.__class__.__mro__[1].__subclasses__()",
        "participant.__class__",
        "participant.attributes.__class__",
        "cycler.__init__.__globals__",
        "program.name.__add__",
    ],
)
def test_sandbox_blocks_internal_attributes(tmp_path: Path, expression: str) -> None:
    path = write(tmp_path, "sms/evil.txt.j2", f"Hello\n{{{{ {expression} }}}}\n")
    with pytest.raises(TemplateError) as caught:
        renderer(tmp_path).render_sms("evil", sample_context("sms"), None, first_in_campaign=False)
    assert (caught.value.path, caught.value.line) == (str(path), 2)


def test_templates_cannot_mutate_the_context(tmp_path: Path) -> None:
    write(tmp_path, "sms/m.txt.j2", "{{ participant.attributes.update({'a': 1}) }}")
    with pytest.raises(TemplateError, match=r"not allowed|unsafe"):
        renderer(tmp_path).render_sms("m", sample_context("sms"), None, first_in_campaign=False)


def _bare_email(root: Path, *, html: str, text: str) -> None:
    write(root, "email/bare.subject.j2", "  Hello {{ participant.first_name }}  \n")
    write(root, "email/bare.html.j2", html)
    write(root, "email/bare.txt.j2", text)


def test_compliance_footer_added_to_both_parts_when_missing(tmp_path: Path) -> None:
    _bare_email(
        tmp_path,
        html="<html><body><p>Hi {{ participant.first_name }}</p></body></html>",
        text="Hi {{ participant.first_name }}",
    )
    context = email_context()
    email = renderer(tmp_path).render_email("bare", context, None)
    url = str(context["unsubscribe_url"])
    assert email.footer_added and email.subject == "Hello Maria"
    assert email.html is not None and email.text is not None
    assert email.html.count(f'href="{url}"') == 1
    assert email.html.count(POSTAL.replace("&", "&amp;")) == 1
    assert email.html.endswith("</body></html>")  # the footer goes inside the body
    assert email.text.count(url) == 1 and email.text.count(POSTAL) == 1
    assert email.text.startswith("Hi Maria\n\n--\n")


def test_footer_added_when_only_the_address_is_missing(tmp_path: Path) -> None:
    _bare_email(
        tmp_path,
        html='<a href="{{ unsubscribe_url }}">Unsubscribe</a>',
        text="{{ unsubscribe_url }}",
    )
    email = renderer(tmp_path).render_email("bare", email_context("es"), "es")
    assert email.footer_added
    assert email.html is not None and POSTAL.replace("&", "&amp;") in email.html
    assert email.text is not None and POSTAL in email.text and "Darse de baja" in email.text


def test_footer_not_duplicated_when_present(tmp_path: Path) -> None:
    _bare_email(
        tmp_path,
        html='<p><a href="{{ unsubscribe_url }}">x</a> {{ postal_address }}</p>',
        text="{{ unsubscribe_url }}\n{{ postal_address }}",
    )
    context = email_context()
    email = renderer(tmp_path).render_email("bare", context, None)
    assert not email.footer_added
    assert email.text == f"{context['unsubscribe_url']}\n{POSTAL}"
    assert email.html is not None and email.html.count(str(context["unsubscribe_url"])) == 1


def test_list_unsubscribe_headers() -> None:
    context = email_context(participant_id=4242)
    email = renderer().render_email("points_expiring", context, None)
    url = str(context["unsubscribe_url"])
    assert url.startswith(f"{PUBLIC_URL}/u/")
    assert email.headers == {
        "List-Unsubscribe": f"<{url}>",
        "List-Unsubscribe-Post": LIST_UNSUBSCRIBE_POST,
    }
    assert LIST_UNSUBSCRIBE_POST == "List-Unsubscribe=One-Click"
    assert SIGNER.verify(url.rsplit("/", 1)[1]) == (4242, "email")


def test_email_without_unsubscribe_url_is_refused() -> None:
    context = sample_context("email")
    del context["unsubscribe_url"]
    with pytest.raises(Exception, match="unsubscribe_url"):
        renderer().render_email("points_expiring", context, None)


def test_multi_line_subject_is_an_error(tmp_path: Path) -> None:
    _bare_email(tmp_path, html="x", text="y")
    write(tmp_path, "email/bare.subject.j2", "Hello\n{{ participant.first_name }}\n")
    with pytest.raises(TemplateError, match=r"bare\.subject\.j2: the subject renders to more"):
        renderer(tmp_path).render_email("bare", email_context(), None)


def test_names_are_escaped_in_html_only() -> None:
    hostile = "<script>alert(1)</script>"
    participant = {
        "external_id": "X1",
        "first_name": hostile,
        "points_balance": 10,
        "points_expiring": 5,
        "points_expire_at": date(2026, 4, 1),
    }
    context = message_context(
        participant,
        "Rewards",
        {"name": "c", "description": ""},
        {"id": "email-1"},
        unsubscribe_url="https://x.example/u/1",
    )
    email = renderer().render_email("winback_a", context, None)
    assert email.html is not None and email.text is not None and email.subject is not None
    assert hostile not in email.html and "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert f"Hi {hostile}," in email.text
    assert email.subject.startswith(hostile)


def test_sendgrid_dynamic_template_gets_the_context_as_data() -> None:
    template_id = "d-" + "0123456789abcdef" * 2
    context = email_context()
    email = renderer().render_email(f"sendgrid:{template_id}", context, None)
    assert email.template_id == template_id and email.html is None
    data = email.dynamic_template_data
    assert data is not None
    assert data["participant"]["first_name"] == "Maria"
    assert data["participant"]["points_expire_at"] == "2026-04-15"
    assert data["postal_address"] == POSTAL
    assert data["unsubscribe_url"] == context["unsubscribe_url"]
    assert email.headers["List-Unsubscribe"] == f"<{context['unsubscribe_url']}>"


def test_message_context_from_an_object_and_missing_attributes(tmp_path: Path) -> None:
    class Row:  # stands in for an ORM row: only attributes are read
        external_id = "A7"
        first_name = None
        last_name = "Li"
        email = "li@example.com"
        phone = None
        status = "active"
        locale = "zh"
        tier = None
        points_balance = 1234567
        points_expiring = 0
        points_expire_at = date(2026, 3, 2)
        renewal_date = None
        attributes = {"home_store": "Downtown"}  # noqa: RUF012

    write(
        tmp_path,
        "calls/ctx.zh.txt.j2",
        "{{ participant.first_name or 'there' }}|{{ participant.attributes.home_store }}|"
        "{{ participant.attributes.not_imported }}|{{ participant.points_balance | number }}|"
        "{{ participant.points_expire_at | date }}|{{ participant.points_expire_at | date('iso') }}"
        "|{{ program.name }}|{{ campaign.name }}|{{ step.id }}",
    )
    context = message_context(
        Row(), "Gold Club", {"name": "winback", "description": "d"}, {"id": "call-1"}
    )
    script = renderer(tmp_path).render_call_script("ctx", context, "zh")
    assert script == ("there|Downtown||1,234,567|2026年3月2日|2026-03-02|Gold Club|winback|call-1")


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en", "12,480 April 15, 2026 Gold active Maria Garcia"),
        ("es", "12.480 15 de abril de 2026 Oro activa José Martínez"),
        ("es-MX", "12,480 15 de abril de 2026 Oro activa José Martínez"),  # Mexico groups by ','
        ("zh-Hant", "12,480 2026年4月15日 金卡 有效 王伟"),  # family name first, no space
        # No fr template: the English default, in English customs (no "15 avril" mid-sentence).
        ("fr", "12,480 April 15, 2026 Gold active Maria Garcia"),
        (None, "12,480 April 15, 2026 Gold active Maria Garcia"),
    ],
)
def test_filters_write_in_the_members_customs(
    tmp_path: Path, locale: str | None, expected: str
) -> None:
    line = (
        "{{ participant.points_balance | number }} {{ participant.points_expire_at | date }} "
        "{{ participant.tier | tier }} {{ participant.status | status }} "
        "{{ participant.full_name }}"
    )
    for variant in ("", ".es", ".zh"):
        write(tmp_path, f"sms/f{variant}.txt.j2", line)
    context = sample_context("sms", locale)
    body = renderer(tmp_path).render_sms("f", context, locale, first_in_campaign=False).body
    assert body == expected


def test_a_template_in_the_members_language_uses_its_cldr_customs(tmp_path: Path) -> None:
    write(
        tmp_path,
        "calls/f.fr.txt.j2",
        "{{ participant.points_balance | number }} | {{ participant.points_expire_at | date }}"
        " | {{ 1234.5 | currency('EUR') }} | {{ participant.renewal_date | date('medium') }}",
    )
    context = sample_context("call", "fr-CA")
    script = renderer(tmp_path).render_call_script("f", context, "fr-CA")
    # CLDR's French: a (narrow) no-break space groups digits, the euro sign follows.
    assert script == "12\xa0480 | 15 avril 2026 | 1\xa0234,50\xa0€ | 1 mai 2026"


def test_a_filter_misuse_is_a_template_error(tmp_path: Path) -> None:
    path = write(tmp_path, "sms/bad.txt.j2", "x\n{{ participant.first_name | number }}")
    with pytest.raises(TemplateError) as caught:
        renderer(tmp_path).render_sms("bad", sample_context("sms"), None, first_in_campaign=False)
    assert (caught.value.path, caught.value.line) == (str(path), 2)
    assert "is not a number" in caught.value.problem


def test_compiled_templates_are_cached(tmp_path: Path) -> None:
    path = write(tmp_path, "sms/c.txt.j2", "one STOP")
    r = renderer(tmp_path)
    first = r.resolve("sms", "c", "es", "txt")
    path.write_text("two STOP", encoding="utf-8")  # not re-read: compiled once per renderer
    assert r.resolve("sms", "c", "es", "txt") is first
    assert r.render_sms("c", {}, "es", first_in_campaign=True).body == "one STOP"


def test_an_empty_field_prints_as_nothing_not_none(tmp_path: Path) -> None:
    write(tmp_path, "sms/exp.txt.j2", "Points expire on {{ participant.points_expire_at }}.")
    context = sample_context("sms")
    context["participant"] = dataclasses.replace(context["participant"], points_expire_at=None)
    sms = renderer(tmp_path).render_sms("exp", context, None, first_in_campaign=False)
    assert sms.body == "Points expire on ."
