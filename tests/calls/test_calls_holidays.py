"""Business days skip the program's public holidays (the holidays library): the follow-up
standard, callback fallback and calling-plan targets, with real holidays (US Thanksgiving
2026-11-26, China's National Day week and its make-up Saturday)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from calls_helpers import make_world, unit
from click.testing import CliRunner

from cli import cli
from engine.app import App
from engine.calls.business_days import (
    UnknownCalendarError,
    holiday_name,
    is_business_day,
    normalise_calendar,
)
from engine.calls.dispositions import DispositionSet
from engine.calls.log import CallInput, log_call
from engine.calls.reporting import agent_performance, calling_plan
from engine.calls.rules import DEFAULT_RULES, fallback_at
from engine.calls.standards import (
    DEFAULT_STANDARD,
    add_business_hours,
    business_hours_between,
    schedule_retry,
)
from engine.db.models import Program

NY = "America/New_York"
SHANGHAI = "Asia/Shanghai"
THANKSGIVING = date(2026, 11, 26)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ---------------------------------------------------------------- the calendar itself


def test_calendar_codes_are_checked_and_normalised() -> None:
    assert normalise_calendar("us-ca") == "US-CA"
    assert normalise_calendar(" cn ") == "CN"
    assert normalise_calendar("GB_SCT") == "GB-SCT"
    with pytest.raises(UnknownCalendarError, match="no country 'XX'"):
        normalise_calendar("XX")
    with pytest.raises(UnknownCalendarError, match=r"US has no subdivision 'ZZ' \(it has: AK"):
        normalise_calendar("US-ZZ")


def test_working_days_follow_the_calendar() -> None:
    assert holiday_name(THANKSGIVING, "US") == "Thanksgiving Day"
    assert not is_business_day(THANKSGIVING, "US")
    assert is_business_day(THANKSGIVING, None)  # no calendar: a Thursday is a business day
    # The day after is a state holiday in California, not a federal one.
    assert is_business_day(date(2026, 11, 27), "US")
    assert not is_business_day(date(2026, 11, 27), "US-CA")
    assert not is_business_day(date(2026, 10, 1), "CN")  # National Day
    assert is_business_day(date(2026, 10, 10), "CN")  # a Saturday worked to make up for it
    assert not is_business_day(date(2026, 10, 10), None)


# ---------------------------------------------------------------- business hours (pure)


def test_the_follow_up_standard_skips_thanksgiving() -> None:
    wednesday_4pm = utc(2026, 11, 25, 21)  # 16:00 in New York
    # Mon-Fri: 1 hour on Wednesday, 7 on Thursday.
    assert add_business_hours(wednesday_4pm, 8, NY) == utc(2026, 11, 26, 21)
    # US: Thursday is Thanksgiving, so the 7 hours are Friday's.
    assert add_business_hours(wednesday_4pm, 8, NY, holidays="US") == utc(2026, 11, 27, 21)
    # California also rests on Friday: Monday 30 November.
    assert add_business_hours(wednesday_4pm, 8, NY, holidays="US-CA") == utc(2026, 11, 30, 21)
    whole_week = (utc(2026, 11, 23, 5), utc(2026, 11, 30, 5))
    assert business_hours_between(*whole_week, NY) == 40
    assert business_hours_between(*whole_week, NY, holidays="US") == 32


def test_national_day_week_and_its_make_up_saturday() -> None:
    wednesday_4pm = utc(2026, 9, 30, 8)  # 16:00 in Shanghai
    # 1 hour on 30 September; 1-7 October are off; 7 hours on Thursday 8 October.
    assert add_business_hours(wednesday_4pm, 8, SHANGHAI, holidays="CN") == utc(2026, 10, 8, 8)
    friday_4pm = utc(2026, 10, 9, 8)
    # Saturday 10 October is worked in China: 1 hour on Friday, 1 on Saturday morning.
    assert add_business_hours(friday_4pm, 2, SHANGHAI, holidays="CN") == utc(2026, 10, 10, 2)
    assert add_business_hours(friday_4pm, 2, SHANGHAI) == utc(2026, 10, 12, 2)  # Monday


def test_a_retry_deadline_and_a_callback_fallback_skip_the_holiday() -> None:
    wednesday_4pm = utc(2026, 11, 25, 21)

    def always(t: datetime) -> datetime:
        return t

    plain = schedule_retry(wednesday_4pm, timedelta(days=3), DEFAULT_STANDARD, NY, always)
    us = schedule_retry(
        wednesday_4pm, timedelta(days=3), DEFAULT_STANDARD, NY, always, holidays="US"
    )
    assert (plain.due, us.due) == (utc(2026, 11, 26, 21), utc(2026, 11, 27, 21))
    assert us.deadline == utc(2026, 11, 27, 21) and us.feasible
    # A callback due on Wednesday at 17:00 nobody takes goes to the team one business hour on
    # (CAMPAIGN_CALLBACK_FALLBACK_AFTER's default): Thursday 10:00, or Friday 10:00 in the US.
    wednesday_5pm = utc(2026, 11, 25, 22)
    assert fallback_at(wednesday_5pm, DEFAULT_RULES, NY) == utc(2026, 11, 26, 15)
    assert fallback_at(wednesday_5pm, DEFAULT_RULES, NY, holidays="US") == utc(2026, 11, 27, 15)


# ---------------------------------------------------------------- stored on the program


D = DispositionSet.standard()


def _log(app: App, task: int, code: str, when: datetime) -> int:
    with unit(app) as s:
        result = log_call(s, CallInput(task, "ana", code, {}, True, None, 30), D, at=when)
    return result.created_task_id or result.task_id


def _set_calendar(app: App, program_id: int, code: str | None) -> None:
    with unit(app) as s:
        program = s.get(Program, program_id)
        assert program is not None
        program.holidays = code


def test_reports_judge_the_follow_up_and_targets_by_the_programs_holidays(app: App) -> None:
    w = make_world(app)
    w.agent("ana", daily_target=10)
    task = w.task(w.member())
    # No answer on Wednesday 16:00 before Thanksgiving; tried again on Friday 14:00: 10
    # business hours later Monday to Friday (a breach of the 8), 7 when Thursday is a holiday.
    _log(app, task, "NO_ANSWER", utc(2026, 11, 25, 21))
    _log(app, task, "NO_ANSWER", utc(2026, 11, 27, 19))

    def follow_up_and_plan() -> tuple[tuple[int, int], dict[str, tuple[int, str]]]:
        with app.sessions() as s:
            [row] = agent_performance(
                s, start=utc(2026, 11, 25), end=utc(2026, 11, 28), at=utc(2026, 11, 27, 20)
            )
            plan = calling_plan(s, "ana", day=THANKSGIVING)
        targets = {f.period: (f.target, f.target_source) for f in plan.figures}
        return (row.follow_ups_due, row.follow_ups_on_time), targets

    follow_up, targets = follow_up_and_plan()
    assert follow_up == (1, 0)
    assert targets["week"] == (50, "daily × 5 business days")
    assert targets["month"] == (210, "daily × 21 business days")

    _set_calendar(app, w.program_id, "US")
    follow_up, targets = follow_up_and_plan()
    assert follow_up == (1, 1)
    assert targets["week"] == (40, "daily × 4 business days, US holidays skipped")
    # November 2026: 21 weekdays less Veterans Day (Wed 11th) and Thanksgiving.
    assert targets["month"] == (190, "daily × 19 business days, US holidays skipped")


@pytest.fixture
def invoke(database_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", database_url)

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, list(args))
        return result.exit_code, result.output

    return run


def test_programs_add_and_set_store_a_checked_calendar(invoke) -> None:  # type: ignore[no-untyped-def]
    code, out = invoke("db", "upgrade")
    assert code == 0, out
    code, out = invoke("programs", "add", "club", "--name", "Club", "--holidays", "us-ca")
    assert code == 0, out
    assert "US-CA holidays" in out

    def stored() -> str | None:
        code, out = invoke("programs", "list", "--json")
        assert code == 0, out
        [program] = json.loads(out)
        return program["holidays"]  # type: ignore[no-any-return]

    assert stored() == "US-CA"

    code, out = invoke("programs", "set", "club", "--holidays", "GB-XYZ")
    assert code == 1
    assert out.strip().splitlines() == [
        "Error: holiday calendar 'GB-XYZ': GB has no subdivision 'XYZ' (it has: ENG, NIR, SCT, WLS)"
    ]
    assert stored() == "US-CA"  # a refused change changes nothing

    code, out = invoke("programs", "set", "club", "--holidays", "CN", "--json")
    assert code == 0, out
    assert json.loads(out)["holidays"] == "CN"
    code, out = invoke("programs", "set", "club", "--holidays", "none")
    assert code == 0 and "Monday to Friday" in out
    assert stored() is None

    code, out = invoke("programs", "add", "other", "--name", "Other", "--holidays", "Narnia")
    assert code == 1 and "no country 'NARNIA'" in out
    code, out = invoke("programs", "list", "--json")
    assert [p["key"] for p in json.loads(out)] == ["club"]  # nothing half-created
