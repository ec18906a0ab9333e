"""`validate` beyond the schema: templates exist, parse, use known variables; audiences compile."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.definitions.loader import load_all
from engine.definitions.validation import (
    ValidationReport,
    find_templates,
    sms_segments,
    validate_campaigns,
)

from .helpers import VALID, make_tree

REPO = Path(__file__).resolve().parents[2]
AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def run(root: Path, files: list[Path] | None = None) -> ValidationReport:
    return validate_campaigns(
        files, campaigns_dir=root / "campaigns", templates_dir=root / "templates", at=AT
    )


def messages(report: ValidationReport) -> list[str]:
    return [str(error) for file in report.files for error in file.errors]


def test_the_example_campaigns_validate_without_warnings() -> None:
    report = validate_campaigns(
        None, campaigns_dir=REPO / "campaigns", templates_dir=REPO / "templates", at=AT
    )
    names = [file.name for file in report.files]
    assert names == ["activate-new", "points-expiring", "renewal-due", "winback-inactive"]
    assert messages(report) == []
    assert [file.warnings for file in report.files] == [[], [], [], []]
    assert report.ok and report.audience_checked


def test_the_example_campaigns_use_every_channel() -> None:
    for loaded in load_all(REPO / "campaigns"):
        assert loaded.definition.channels == {"email", "sms", "call"}, loaded.name
        assert loaded.definition.program == "demo"


@pytest.mark.parametrize("name", ["points_expiring", "renewal_due", "renewal_last_chance"])
def test_example_emails_have_spanish_and_chinese_variants(name: str) -> None:
    found = find_templates(REPO / "templates", "email", name)
    assert set(found.locales) == {"es", "zh"}
    for parts in (found.default, *found.locales.values()):
        assert set(parts) == {"subject", "html", "txt"}
        for part in ("html", "txt"):
            text = parts[part].read_text(encoding="utf-8")
            assert "{{ unsubscribe_url }}" in text and "{{ postal_address }}" in text


def test_first_sms_of_each_example_says_how_to_opt_out() -> None:
    for loaded in load_all(REPO / "campaigns"):
        first = next(step for step in loaded.definition.steps if step.channel == "sms")
        assert first.template is not None
        default = find_templates(REPO / "templates", "sms", first.template).default["txt"]
        assert default.read_text(encoding="utf-8").strip().endswith("Reply STOP to opt out")


def test_ok_tree(tmp_path: Path) -> None:
    make_tree(tmp_path)
    report = run(tmp_path)
    assert report.ok and messages(report) == [] and report.files[0].warnings == []


def test_unknown_template_file_is_reported_at_the_reference(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            "sample": VALID.replace(
                "    template: hello\n    delay", "    template: hullo\n    delay"
            )
        },
    )
    report = run(tmp_path)
    assert not report.ok
    assert messages(report) == [
        f"{tmp_path}/campaigns/sample.yaml:16 steps[1].template: template not found: "
        f"{tmp_path}/templates/sms/hullo.txt.j2"
    ]


def test_missing_email_part(tmp_path: Path) -> None:
    _, templates = make_tree(tmp_path)
    (templates / "email" / "hello.subject.j2").unlink()
    assert messages(run(tmp_path)) == [
        f"{tmp_path}/campaigns/sample.yaml:13 steps[0].template: template not found: "
        f"{templates}/email/hello.subject.j2"
    ]


def test_jinja_syntax_error_names_the_template_file_and_line(tmp_path: Path) -> None:
    _, templates = make_tree(tmp_path)
    (templates / "calls" / "hello.es.txt.j2").write_text(
        "Hola {{ participant.first_name }}\n\n{% if participant.tier %}\nOro\n"
    )
    errors = [error for file in run(tmp_path).files for error in file.errors]
    assert len(errors) == 1
    assert errors[0].path == str(templates / "calls" / "hello.es.txt.j2")
    assert errors[0].line == 3  # Jinja points at the block left open
    assert "template syntax error" in errors[0].detail
    assert f"used by {tmp_path}/campaigns/sample.yaml:20 steps[2].script" in errors[0].detail


def test_jinja_syntax_error_line(tmp_path: Path) -> None:
    _, templates = make_tree(tmp_path)
    (templates / "sms" / "hello.txt.j2").write_text("Hi\n{{ participant.first_name }\nSTOP\n")
    (error,) = [error for file in run(tmp_path).files for error in file.errors]
    assert (error.path, error.line) == (str(templates / "sms" / "hello.txt.j2"), 2)


def test_unknown_variable(tmp_path: Path) -> None:
    _, templates = make_tree(tmp_path)
    (templates / "sms" / "hello.txt.j2").write_text(
        "Hi {{ participant.first_name }}\n{{ unsubscribe_url }} Reply STOP to opt out\n"
    )
    (error,) = [error for file in run(tmp_path).files for error in file.errors]
    assert error.line == 2
    assert error.detail.startswith(
        "unknown variable 'unsubscribe_url'; templates for sms can use campaign, participant,"
    )


def test_marketing_email_needs_unsubscribe_and_postal_address(tmp_path: Path) -> None:
    _, templates = make_tree(tmp_path)
    (templates / "email" / "hello.zh.html.j2").write_text("<p>{{ postal_address }}</p>\n")
    (templates / "email" / "hello.zh.subject.j2").write_text("你好\n")
    (templates / "email" / "hello.zh.txt.j2").write_text(
        "{{ unsubscribe_url }} {{ postal_address }}\n"
    )
    (error,) = [error for file in run(tmp_path).files for error in file.errors]
    assert error.path.endswith("hello.zh.html.j2")
    assert "{{ unsubscribe_url }}" in error.detail


def test_partial_locale_variant_is_a_warning(tmp_path: Path) -> None:
    _, templates = make_tree(tmp_path)
    (templates / "email" / "hello.es.subject.j2").write_text("Hola\n")
    report = run(tmp_path)
    assert report.ok
    (warning,) = report.files[0].warnings
    assert "hello.es.*: no html, txt part" in warning


def test_long_sms_and_missing_opt_out_are_warnings(tmp_path: Path) -> None:
    _, templates = make_tree(tmp_path)
    (templates / "sms" / "hello.zh.txt.j2").write_text("您好" * 80 + "{{ program.name }}\n")
    report = run(tmp_path)
    assert report.ok
    warnings = report.files[0].warnings
    assert any(
        "hello.zh.txt.j2: the fixed text alone is 160 characters, 3 SMS" in w for w in warnings
    )
    assert any(
        "hello.zh.txt.j2: the first SMS of sample should say how to opt out" in w for w in warnings
    )


def test_sendgrid_dynamic_templates_need_no_file(tmp_path: Path) -> None:
    dynamic = "sendgrid:d-" + "0123456789abcdef" * 2
    make_tree(
        tmp_path,
        {
            "sample": VALID.replace(
                "template: hello\n  - id: sms-1", f"template: '{dynamic}'\n  - id: sms-1"
            )
        },
    )
    assert run(tmp_path).ok


def test_audience_that_cannot_compile_is_reported_at_its_condition(tmp_path: Path) -> None:
    source = VALID.replace("{field: status, eq: active}", "{field: points_balance, eq: lots}")
    make_tree(tmp_path, {"sample": source})
    (error,) = [error for file in run(tmp_path).files for error in file.errors]
    assert (error.line, error.field) == (5, "audience.all[0]")
    assert error.detail.startswith("cannot compile: ")


def test_missing_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    make_tree(tmp_path)
    report = run(tmp_path, [tmp_path / "campaigns" / "nope.yaml"])
    assert not report.ok
    assert messages(report) == [f"{tmp_path}/campaigns/nope.yaml: no such campaign file"]


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # GSM-7 extension characters take two units
        ("€" * 81, 2),
        ("é" * 160, 1),  # in the GSM-7 basic set
        ("ó" * 70, 1),  # not in GSM-7: the whole message is UCS-2
        ("ó" * 71, 2),
        ("积" * 134, 2),
        ("积" * 135, 3),
    ],
)
def test_sms_segments(text: str, segments: int) -> None:
    assert sms_segments(text) == segments
