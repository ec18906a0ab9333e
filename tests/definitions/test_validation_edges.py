"""`validate` renders every template for edge members too (issue #16): blank fields and the
longest values, so what would skip real members at send time shows before launch."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from engine.definitions.validation import ValidationReport, validate_campaigns

from .helpers import VALID, make_tree

AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def run(root: Path) -> ValidationReport:
    return validate_campaigns(
        None, campaigns_dir=root / "campaigns", templates_dir=root / "templates", at=AT
    )


def test_a_template_that_fails_for_a_member_with_blank_fields_is_a_warning(
    tmp_path: Path,
) -> None:
    _, templates = make_tree(tmp_path)
    (templates / "sms" / "hello.txt.j2").write_text(
        "{{ participant.first_name.upper() }}: hi. Reply STOP to opt out\n"
    )
    report = run(tmp_path)
    assert report.ok  # the tidy sample member renders
    warnings = report.files[0].warnings
    assert any("hello.txt.j2: fails for a member with blank fields" in w for w in warnings)


def test_a_subject_empty_for_some_members_is_a_warning(tmp_path: Path) -> None:
    _, templates = make_tree(tmp_path)
    (templates / "email" / "hello.subject.j2").write_text("{{ participant.first_name }}\n")
    warnings = run(tmp_path).files[0].warnings
    assert any("the subject renders empty for a member with blank fields" in w for w in warnings)


def test_an_sms_too_long_for_the_longest_names_is_a_warning(tmp_path: Path) -> None:
    _, templates = make_tree(tmp_path)
    (templates / "sms" / "hello.txt.j2").write_text(
        "{% for i in range(40) %}{{ participant.last_name }} {% endfor %}Reply STOP to opt out\n"
    )
    warnings = run(tmp_path).files[0].warnings
    assert any(
        "longest values, more than Twilio takes" in w and "sms_too_long" in w for w in warnings
    )


def test_the_shipped_hello_templates_have_no_edge_warnings(tmp_path: Path) -> None:
    make_tree(tmp_path, {"sample": VALID})
    assert run(tmp_path).files[0].warnings == []
