"""`campaign validate` renders every referenced template for a sample participant."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.definitions.validation import ValidationReport, validate_campaigns

from .helpers import CAMPAIGNS, TEMPLATES, write

AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
CAMPAIGN = """\
name: sample
program: demo
audience: {field: status, eq: active}
goal: {events: [login], window: 30d}
sms_max_segments: 1
steps:
  - id: email-1
    channel: email
    template: hello
  - id: sms-1
    channel: sms
    template: hello
  - id: call-1
    channel: call
    script: hello
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write(tmp_path, "campaigns/sample.yaml", textwrap.dedent(CAMPAIGN))
    write(
        tmp_path, "templates/email/hello.subject.j2", "Hi {{ participant.first_name or 'there' }}\n"
    )
    for part in ("html", "txt"):
        write(
            tmp_path,
            f"templates/email/hello.{part}.j2",
            "{{ participant.points_balance | number }}\n{{ unsubscribe_url }}\n"
            "{{ postal_address }}\n",
        )
    write(tmp_path, "templates/sms/hello.txt.j2", "{{ program.name }}: hi. Reply STOP to opt out")
    write(
        tmp_path, "templates/calls/hello.txt.j2", "Call {{ participant.first_name or 'there' }}\n"
    )
    return tmp_path


def run(root: Path) -> ValidationReport:
    return validate_campaigns(
        None, campaigns_dir=root / "campaigns", templates_dir=root / "templates", at=AT
    )


def errors(report: ValidationReport) -> list[tuple[str, int | None, str]]:
    return [(e.path, e.line, e.detail) for file in report.files for e in file.errors]


def test_ok(tree: Path) -> None:
    report = run(tree)
    assert errors(report) == [] and report.files[0].warnings == []
    (sms,) = report.files[0].sms
    assert (sms.encoding, sms.segments, sms.locale) == ("GSM-7", 1, None)
    assert sms.characters == len("Northwind Rewards: hi. Reply STOP to opt out")


def test_misspelt_attribute_fails_at_validate_with_file_and_line(tree: Path) -> None:
    path = write(
        tree,
        "templates/calls/hello.es.txt.j2",
        "Llamar\n\n{{ participant.frist_name }}\n",
    )
    ((where, line, detail),) = errors(run(tree))
    assert (where, line) == (str(path), 3)
    assert "'participant' has no attribute 'frist_name'" in detail
    assert "used by" in detail and "sample.yaml:15 steps[2].script" in detail


def test_every_locale_variant_is_rendered(tree: Path) -> None:
    path = write(tree, "templates/email/hello.zh.subject.j2", "{{ participant.tier.upper( }}你好\n")
    write(tree, "templates/email/hello.zh.html.j2", "{{ unsubscribe_url }} {{ postal_address }}")
    write(
        tree,
        "templates/email/hello.zh.txt.j2",
        "{{ unsubscribe_url }}\n{{ postal_address }}\n{{ participant.points_balance + 'x' }}\n",
    )
    found = errors(run(tree))
    assert [(p, line) for p, line, _ in found] == [
        (str(path), 1),
        (str(tree / "templates/email/hello.zh.txt.j2"), 3),
    ]
    assert "syntax error" in found[0][2]
    assert "TypeError" in found[1][2]


def test_forbidden_construct_fails_at_validate(tree: Path) -> None:
    path = write(
        tree, "templates/sms/hello.txt.j2", "Hi\n{{ ''.__class__ }} Reply STOP to opt out\n"
    )
    ((where, line, detail),) = errors(run(tree))
    assert (where, line) == (str(path), 2)
    assert "not allowed in a template" in detail


def test_multi_line_subject_fails_at_validate(tree: Path) -> None:
    path = write(tree, "templates/email/hello.subject.j2", "Hi\n\n{{ participant.first_name }}\n")
    ((where, _, detail),) = errors(run(tree))
    assert where == str(path) and "more than one line" in detail


def test_sms_over_the_limit_once_rendered_is_a_warning(tree: Path) -> None:
    # Short fixed text, but the rendered message does not fit one segment (the limit here).
    write(
        tree,
        "templates/sms/hello.txt.j2",
        "{{ program.name }}, {{ participant.first_name }} {{ participant.last_name }}: "
        "{{ participant.points_balance | number }} points, {{ participant.points_expiring }} "
        "expiring {{ participant.points_expire_at | date }}. {{ campaign.description }}. "
        "{{ participant.email }} {{ participant.phone }}",
    )
    write(tree, "templates/sms/hello.zh.txt.j2", "{{ program.name }}您好")
    report = run(tree)
    assert report.ok
    sizes = {size.locale: size for size in report.files[0].sms}
    default, chinese = sizes[None], sizes["zh"]
    assert default.segments == 2 and default.encoding == "GSM-7"
    # The first SMS is measured with the opt-out notice the renderer adds.
    assert (chinese.encoding, chinese.segments) == ("UCS-2", 1)
    assert chinese.characters == len("Northwind Rewards您好 回复STOP退订。")
    warnings = report.files[0].warnings
    assert any(
        w.startswith(f"{tree}/templates/sms/hello.txt.j2: rendered for a sample participant")
        and f"{default.characters} characters (GSM-7), 2 SMS segments (sms_max_segments is 1)" in w
        for w in warnings
    ), warnings


def test_attributes_are_free_form_at_validate(tree: Path) -> None:
    write(
        tree,
        "templates/calls/hello.txt.j2",
        "Store: {{ participant.attributes.home_store }}\n",
    )
    assert run(tree).ok


def test_the_example_campaigns_report_their_sms_sizes() -> None:
    report = validate_campaigns(None, campaigns_dir=CAMPAIGNS, templates_dir=TEMPLATES, at=AT)
    assert report.ok
    for file in report.files:
        assert file.sms, file.name  # every example campaign has an SMS step
        limit = 2
        assert all(size.segments <= limit for size in file.sms), file.sms
        locales = {size.locale for size in file.sms}
        assert None in locales


def test_first_sms_is_measured_with_the_programs_notice_setting(tree: Path) -> None:
    # 19 characters of "Northwind Rewards: " + 135: 154, one segment; with the notice, two.
    write(tree, "templates/sms/hello.txt.j2", "{{ program.name }}: " + "x" * 135)
    without = "the first SMS of sample should say how to opt out"

    def measure(
        notices: dict[str, bool] | None, program: str | None = "demo"
    ) -> tuple[int, list[str]]:
        line = f"program: {program}\n" if program else ""
        source = textwrap.dedent(CAMPAIGN).replace("program: demo\n", line)
        write(tree, "campaigns/sample.yaml", source)
        report = validate_campaigns(
            None,
            campaigns_dir=tree / "campaigns",
            templates_dir=tree / "templates",
            at=AT,
            sms_opt_out_notices=notices,
        )
        (sms,) = report.files[0].sms
        return sms.segments, report.files[0].warnings

    segments, warnings = measure(None)  # no database: the notice is on
    assert segments == 2 and len(warnings) == 2 and without in warnings[1]
    assert measure({"demo": True}) == (segments, warnings)
    assert measure({"other": False}) == (segments, warnings)  # not its program

    segments, warnings = measure({"demo": False, "other": True})
    assert segments == 1 and len(warnings) == 1
    assert warnings[0].endswith(
        "; program demo has the opt-out notice turned off, so none is added"
    )
    # A campaign naming no program runs in the only one there is.
    segments, warnings = measure({"demo": False}, program=None)
    assert segments == 1 and warnings[0].endswith(
        "; its program has the opt-out notice turned off, so none is added"
    )
    assert measure({"demo": False, "other": False}, program=None)[0] == 2  # which? the default
