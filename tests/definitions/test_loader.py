"""The loader: every mistake reported as file:line field: message, all of them at once."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.definitions.loader import (
    DefinitionErrors,
    load_all,
    load_campaign,
    load_definition,
    parse_definition,
)
from engine.definitions.schema import ReentryAfter
from engine.errors import DefinitionError, InputError, NotFoundError

from .helpers import VALID, dedent, errors_of, make_tree

F = "campaigns/sample.yaml"


def replace(old: str, new: str, source: str = VALID) -> str:
    assert old in source
    return source.replace(old, new, 1)


def test_the_valid_sample_loads() -> None:
    loaded = parse_definition(VALID, F, expected_name="sample")
    definition = loaded.definition
    assert definition.channels == {"email", "sms", "call"}
    assert definition.steps[1].delay == timedelta(days=3)
    assert definition.reentry == "once" and definition.reentry_after is None
    assert definition.holdout_percent == 10
    assert loaded.line_of(("steps", 2, "script")) == 20


def test_bad_duration() -> None:
    errors = errors_of(replace("delay: 3d", "delay: 3 dayz"))
    assert errors == [f"{F}:17 steps[1].delay: '3 dayz' is not a duration; use e.g. '3d' or '36h'"]


def test_bad_duration_inside_a_filter_strips_the_union_tags() -> None:
    errors = errors_of(replace("older_than: 90d", "older_than: 90 days"))
    assert errors == [
        f"{F}:6 audience.all[1].older_than: '90 days' is not a duration; use e.g. '3d' or '36h'"
    ]


def test_unknown_top_level_key_suggests_the_right_one() -> None:
    errors = errors_of(replace("goal:", "gaol: {}\ngoal:"))
    assert len(errors) == 1
    assert errors[0].startswith(f"{F}:7 gaol: unknown key 'gaol'; did you mean 'goal'?")
    assert "Expected one of:" in errors[0] and "holdout_percent" in errors[0]


def test_unknown_key_in_a_step() -> None:
    errors = errors_of(replace("    delay: 7d", "    delay: 7d\n    retries: 2"))
    assert len(errors) == 1
    assert errors[0].startswith(f"{F}:22 steps[2].retries: unknown key 'retries'")
    assert "max_attempts" in errors[0]


def test_unknown_key_in_a_nested_filter() -> None:
    source = replace(
        "    - {field: last_activity_at, older_than: 90d}",
        "    - not:\n        event: login\n        within_lst: 90d",
    )
    errors = errors_of(source)
    assert len(errors) == 1
    assert errors[0].startswith(
        f"{F}:8 audience.all[1].not.within_lst: unknown key 'within_lst'; "
        "did you mean 'within_last'?"
    )


def test_filter_without_a_kind_key() -> None:
    errors = errors_of(replace("{field: status, eq: active}", "{feild: status, eq: active}"))
    assert errors == [
        f"{F}:5 audience.all[0]: a filter needs one of the keys all, any, not, event or field"
        " (got a mapping with keys feild, eq)"
    ]


def test_wrong_type() -> None:
    errors = errors_of(replace("    delay: 7d", "    delay: 7d\n    max_attempts: many"))
    assert errors == [f"{F}:22 steps[2].max_attempts: expected a whole number, got 'many'"]
    errors = errors_of(replace("events: [login]", "events: login"))
    assert errors == [f"{F}:8 goal.events: expected a list, got 'login'"]


def test_smart_union_failure_is_one_message() -> None:
    errors = errors_of(replace("eq: active", "eq: {x: 1}"))
    assert len(errors) == 1
    assert errors[0].startswith(f"{F}:5 audience.all[0].eq: expected text or a number")


def test_missing_required_field_points_at_its_parent() -> None:
    source = VALID.replace("goal:\n  events: [login]\n  window: 30d\n", "")
    errors = errors_of(source)
    assert len(errors) == 1
    assert errors[0].startswith(f"{F}:1 goal: required field is missing; what counts")
    errors = errors_of(replace("    channel: sms\n", ""))
    assert errors == [f"{F}:14 steps[1].channel: required field is missing; email, sms or call"]


def test_bad_enum() -> None:
    errors = errors_of(replace("channel: sms", "channel: fax"))
    assert errors == [
        f"{F}:15 steps[1].channel: 'fax' is not allowed; expected 'email', 'sms' or 'call'"
    ]


def test_duplicate_step_id_points_at_the_second() -> None:
    errors = errors_of(replace("id: sms-1", "id: email-1"))
    assert errors == [f"{F}:14 steps[1].id: step id 'email-1' is already used by steps[0]"]


def test_template_and_variants_both_set() -> None:
    source = replace(
        "    template: hello\n  - id: sms-1",
        "    template: hello\n    variants:\n      - {name: a, template: x}\n"
        "      - {name: b, template: y}\n  - id: sms-1",
    )
    errors = errors_of(source)
    assert errors == [
        f"{F}:14 steps[0].variants: give either template or variants (an A/B test), not both"
    ]


def test_variant_names_unique_and_weights_positive() -> None:
    source = replace(
        "    template: hello\n  - id: sms-1",
        "    variants:\n      - {name: a, template: x}\n"
        "      - {name: a, template: y, weight: 0}\n  - id: sms-1",
    )
    errors = errors_of(source)
    assert errors == [f"{F}:15 steps[0].variants[1].weight: 0: input should be greater than 0"]
    errors = errors_of(source.replace("weight: 0", "weight: 2"))
    assert errors == [f"{F}:15 steps[0].variants[1].name: variant name 'a' is used twice"]


def test_call_step_rules() -> None:
    errors = errors_of(replace("    script: hello", "    template: hello"))
    assert errors == [
        f"{F}:20 steps[2].template: call steps take script (templates/calls/<script>.txt.j2),"
        " not template"
    ]
    errors = errors_of(replace("    delay: 3d", "    delay: 3d\n    team: retention"))
    assert errors == [f"{F}:18 steps[1].team: team is only for call steps"]
    errors = errors_of(replace("    script: hello\n", ""))
    assert errors[0].startswith(f"{F}:18 steps[2]: call steps need script")


def test_condition_needs_an_earlier_step_of_its_channel() -> None:
    errors = errors_of(replace("channel: email\n", "channel: email\n    condition: no_reply\n"))
    assert errors == [
        f"{F}:13 steps[0].condition: condition no_reply needs an earlier email or SMS step"
    ]
    good = replace(
        "    delay: 3d", "    delay: 3d\n    condition: [not_converted, email_not_opened]"
    )
    assert errors_of(good) == []


def test_yaml_syntax_error() -> None:
    errors = errors_of(replace("events: [login]", "events: [login"))
    assert len(errors) == 1
    assert errors[0].startswith(f"{F}:9: YAML syntax error:")


def test_duplicate_mapping_key() -> None:
    errors = errors_of(replace("    delay: 7d", "    delay: 7d\n    delay: 8d"))
    assert errors == [f"{F}:22 steps[2].delay: duplicate key 'delay' (first given on line 21)"]


def test_name_must_match_the_file() -> None:
    assert errors_of(VALID, name="other") == [
        "campaigns/other.yaml:1 name: 'sample' must equal the file name 'other'"
        " (rename the file or the campaign)"
    ]


def test_empty_and_non_mapping_files() -> None:
    assert errors_of("") == [f"{F}:1: the file is empty; expected a campaign mapping"]
    assert errors_of("- a\n") == [
        f"{F}:1: expected a mapping of campaign fields (name:, audience:, ...), got a list"
    ]


def test_every_error_is_reported_in_line_order() -> None:
    source = replace("channel: sms", "channel: fax", replace("delay: 3d", "delay: soon"))
    source = replace("window: 30d", "window: 30d\n  extra: 1", source)
    with pytest.raises(DefinitionErrors) as caught:
        parse_definition(dedent(source), F, expected_name="sample")
    assert isinstance(caught.value, InputError)
    lines = str(caught.value).splitlines()
    assert [line.split(" ")[0] for line in lines] == [f"{F}:10", f"{F}:16", f"{F}:18"]
    assert [error.line for error in caught.value.errors] == [10, 16, 18]


def test_unquoted_times_are_times_not_base_60_numbers() -> None:
    source = VALID + "send_window: {start: 9:30, end: 20:00, days: [MON, tue]}\n"
    window = parse_definition(source, F).definition.send_window
    assert window is not None
    assert (window.start, window.end, window.days) == (time(9, 30), time(20, 0), ["mon", "tue"])
    errors = errors_of(VALID + "send_window: {start: '20:00', end: '09:00'}\n")
    assert errors == [f"{F}:22 send_window.end: start 20:00 must be before end 09:00"]


def test_schedule_rules() -> None:
    cron = VALID + "schedule: {cron: '0 9 * * MON', timezone: America/New_York}\n"
    schedule = parse_definition(cron, F).definition.schedule
    assert schedule is not None and schedule.recurring and schedule.trigger() is not None
    assert errors_of(VALID + "schedule: {cron: '0 9 * * MON'}\n")[0].startswith(
        f"{F}:22 schedule: a cron schedule needs timezone"
    )
    assert errors_of(VALID + "schedule: {cron: '0 25 * * *', timezone: UTC}\n")[0].startswith(
        f"{F}:22 schedule.cron: '0 25 * * *' is not a 5-field crontab"
    )
    assert errors_of(VALID + "schedule: {start: 2026-12-01T10:00:00}\n") == [
        f"{F}:22 schedule.start: 2026-12-01T10:00:00 needs a UTC offset, "
        "e.g. 2026-12-01T10:00:00-05:00"
    ]
    both = "schedule: {start: 2026-12-01T10:00:00Z, cron: '0 9 * * *', timezone: UTC}\n"
    assert errors_of(VALID + both)[0].startswith(f"{F}:22 schedule: give exactly one of start")


def test_reentry_forms() -> None:
    loaded = parse_definition(VALID + "reentry: {after: 90d}\n", F)
    assert loaded.definition.reentry == ReentryAfter(after=timedelta(days=90))
    assert loaded.definition.reentry_after == timedelta(days=90)
    assert errors_of(VALID + "reentry: twice\n") == [
        f"{F}:22 reentry: 'twice' is not allowed; expected 'once'"
    ]
    assert errors_of(VALID + "reentry: {after: later}\n") == [
        f"{F}:22 reentry.after: 'later' is not a duration; use e.g. '3d' or '36h'"
    ]


def test_holdout_bounds_and_places() -> None:
    assert parse_definition(VALID + "holdout_percent: 12.5\n", F).definition.holdout_percent == (
        pytest.approx(12.5)
    )
    assert errors_of(VALID + "holdout_percent: 60\n") == [
        f"{F}:22 holdout_percent: 60: input should be less than or equal to 50"
    ]
    assert errors_of(VALID + "holdout_percent: 1.234\n") == [
        f"{F}:22 holdout_percent: 1.234 has too many decimals; at most 2"
    ]


def test_content_hash_is_stable_and_follows_the_content(tmp_path: Path) -> None:
    campaigns, _ = make_tree(tmp_path)
    path = campaigns / "sample.yaml"
    first, again = load_definition(path), load_definition(path)
    assert first.content_hash == again.content_hash and len(first.content_hash) == 64
    assert first.source == path.read_text()
    path.write_text(path.read_text() + "# a comment changes the text\n")
    changed = load_definition(path)
    assert changed.content_hash != first.content_hash
    assert changed.definition == first.definition


def test_load_campaign_and_not_found(tmp_path: Path) -> None:
    campaigns, _ = make_tree(tmp_path)
    assert load_campaign(campaigns, "sample").name == "sample"
    with pytest.raises(NotFoundError, match=r"no campaign 'nope' .*available: sample"):
        load_campaign(campaigns, "nope")
    with pytest.raises(NotFoundError):
        load_campaign(campaigns, "../campaigns/sample")


def test_load_all_collects_errors_of_every_file(tmp_path: Path) -> None:
    campaigns, _ = make_tree(
        tmp_path,
        {
            "sample": VALID,
            "bad-one": VALID.replace("name: sample", "name: bad-one").replace("3d", "3x"),
            "bad-two": VALID.replace("name: sample", "name: bad-two").replace(
                "channel: sms", "channel: fax"
            ),
        },
    )
    with pytest.raises(DefinitionErrors) as caught:
        load_all(campaigns)
    paths = [error.path for error in caught.value.errors]
    assert paths == [str(campaigns / "bad-one.yaml"), str(campaigns / "bad-two.yaml")]
    (campaigns / "bad-one.yaml").unlink()
    (campaigns / "bad-two.yaml").unlink()
    assert [loaded.name for loaded in load_all(campaigns)] == ["sample"]


def test_single_error_is_a_definition_error_with_its_parts() -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(VALID.replace("3d", "3x"), F)
    error = caught.value
    assert (error.path, error.line, error.field) == (F, 17, "steps[1].delay")
    assert "'3x' is not a duration" in error.detail


def test_impossible_date_is_reported_at_its_line() -> None:
    errors = errors_of(VALID + "schedule: {start: 2026-13-01T10:00:00Z}\n")
    assert errors == [
        f"{F}:22: YAML syntax error: '2026-13-01T10:00:00Z' is not a valid date or time "
        "(month must be in 1..12)"
    ]


@settings(max_examples=40, deadline=None)
@given(
    delays=st.lists(st.sampled_from(["0d", "2d", "36h", "1w2d"]), min_size=1, max_size=6),
    bad=st.data(),
    padding=st.lists(st.sampled_from(["# note", ""]), max_size=3),
)
def test_a_bad_delay_is_reported_at_its_own_line(
    delays: list[str], bad: st.DataObject, padding: list[str]
) -> None:
    """Whatever the shape of the file, the error names the line where the bad value is."""
    index = bad.draw(st.integers(0, len(delays) - 1))
    lines = ["name: sample", *padding, "audience: {field: status, eq: active}"]
    lines += ["goal: {events: [login], window: 30d}", "steps:"]
    expected_line = 0
    for i, delay in enumerate(delays):
        lines += [f"  - id: step-{i}", "    channel: sms", "    template: hello"]
        lines += [*padding]
        lines.append(f"    delay: {'soonish' if i == index else delay}")
        if i == index:
            expected_line = len(lines)
    assert errors_of("\n".join(lines) + "\n") == [
        f"{F}:{expected_line} steps[{index}].delay: 'soonish' is not a duration; "
        "use e.g. '3d' or '36h'"
    ]
