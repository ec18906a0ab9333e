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


RENEWAL = VALID.replace(
    "    - {field: last_activity_at, older_than: 90d}\n",
    "    - {field: last_activity_at, older_than: 90d}\n"
    "    - {field: renewal_date, within_next: 30d}\n",
)
ZH_SCRIPT = "您的{{ participant.tier | tier }}会员将于{{ participant.renewal_date | date }}到期。\n"


def test_a_field_printed_blank_that_the_audience_does_not_require_is_a_warning(
    tmp_path: Path,
) -> None:
    # The zh call script of a campaign whose audience admits members without a renewal date:
    # theirs would read "您的会员将于到期" (a blank tier still reads; a blank date does not).
    _, templates = make_tree(tmp_path)
    (templates / "calls" / "hello.zh.txt.j2").write_text(ZH_SCRIPT)
    report = run(tmp_path)
    assert report.ok
    (warning,) = report.files[0].warnings
    assert warning.startswith(
        f"{templates / 'calls' / 'hello.zh.txt.j2'}: prints nothing where a member has no "
        "renewal_date, and the audience does not require it: such members would read a "
        "sentence with a hole; guard it with {% if participant.renewal_date %}...{% endif %}"
    )
    assert "sample.yaml:" in warning and "steps[2].script" in warning


def test_no_warning_when_the_audience_requires_the_field_or_the_template_guards_it(
    tmp_path: Path,
) -> None:
    _, templates = make_tree(tmp_path, {"sample": RENEWAL})
    (templates / "calls" / "hello.zh.txt.j2").write_text(ZH_SCRIPT)
    assert run(tmp_path).files[0].warnings == []

    guarded = tmp_path / "guarded"
    _, templates = make_tree(guarded)
    (templates / "calls" / "hello.zh.txt.j2").write_text(
        "您的会员{% if participant.renewal_date %}将于{{ participant.renewal_date | date }}"
        "{% else %}即将{% endif %}到期。{{ participant.first_name or '' }}\n"
    )
    assert run(guarded).files[0].warnings == []


def test_an_audience_requires_what_every_member_it_admits_has() -> None:
    from engine.definitions.filters import fields_required
    from engine.definitions.loader import parse_definition

    def required(audience: str) -> frozenset[str]:
        source = VALID.replace(
            "audience:\n  all:\n    - {field: status, eq: active}\n"
            "    - {field: last_activity_at, older_than: 90d}\n",
            f"audience:\n{audience}",
        )
        return fields_required(
            parse_definition(source, "campaigns/sample.yaml").definition.audience
        )

    assert required(
        "  all:\n    - {field: tier, in: [gold]}\n    - {field: renewal_date, is_null: false}\n"
    ) == {"tier", "renewal_date"}
    # any: only what every branch requires; ne / not_in / is_null true / not: nothing.
    assert (
        required(
            "  any:\n    - {field: tier, eq: gold}\n    - {field: tier, eq: silver}\n"
            "    - {field: renewal_date, before: 2027-01-01}\n"
        )
        == frozenset()
    )
    assert required("  any:\n    - {field: tier, eq: gold}\n    - {field: tier, eq: x}\n") == {
        "tier"
    }
    assert required("  {field: tier, ne: gold}\n") == frozenset()
    assert required("  {not: {field: tier, is_null: true}}\n") == frozenset()
    assert required("  {field: renewal_date, is_null: true}\n") == frozenset()
