"""Language routing: a member's task is served first to an agent who speaks their language,
to the others after the wait (engine/calls/language_routing.py). Time is the `at` given to
claim-next and the list (the injected clock), never the machine's."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from calls_helpers import TEST_NOW, make_world, unit
from click.testing import CliRunner

from cli import cli
from engine.app import App
from engine.calls.agents import disable_agent
from engine.calls.dispositions import DispositionSet
from engine.calls.listing import list_calls
from engine.calls.log import CallInput, log_call
from engine.calls.rules import DEFAULT_RULES, CallRules
from engine.calls.tasks import claim_next
from engine.reports.agents import agents_report
from engine.settings import Settings

WAIT = DEFAULT_RULES.language_routing_wait  # 15 minutes


def claim(app: App, agent: str, at: datetime = TEST_NOW, **kw):  # type: ignore[no-untyped-def]
    with unit(app) as s:
        found = claim_next(s, agent, at=at, **kw)
        return None if found is None else found.task_id


def test_a_zh_members_task_is_served_first_to_an_agent_who_speaks_zh(app: App) -> None:
    w = make_world(app)
    w.agent("eva", languages=("en",))
    w.agent("eli", languages=("en", "es"))
    w.agent("wen", languages=("zh", "en"))
    just_due = TEST_NOW - timedelta(minutes=5)
    # The zh member ranks first by points, yet the English-only agents are not served them.
    zh_task = w.task(w.member(locale="zh-Hant-TW", points_balance=9000), due_at=just_due)
    en_task = w.task(w.member(locale="en-US", points_balance=10), due_at=just_due)
    assert claim(app, "eva") == en_task
    assert claim(app, "eli") is None
    assert claim(app, "wen") == zh_task


def test_the_others_get_it_after_the_wait_from_when_it_fell_due(app: App) -> None:
    w = make_world(app)
    w.agent("eva", languages=("en",))
    w.agent("wen", languages=("zh",))  # speaks zh, but is busy: never claims here
    due = TEST_NOW - timedelta(minutes=5)
    task = w.task(w.member(locale="zh"), due_at=due)
    assert claim(app, "eva", at=due + WAIT - timedelta(minutes=1)) is None
    assert claim(app, "eva", at=due + WAIT) == task


def test_a_configured_wait_and_no_wait(app: App) -> None:
    w = make_world(app)
    w.agent("eva", languages=("en",))
    w.agent("wen", languages=("zh",))
    due = TEST_NOW - timedelta(minutes=5)
    task = w.task(w.member(locale="zh"), due_at=due)
    settings = Settings(database_url="sqlite://", language_routing_wait="2h")
    two_hours = CallRules.from_settings(settings)
    assert two_hours.language_routing_wait == timedelta(hours=2)
    assert claim(app, "eva", at=due + WAIT, rules=two_hours) is None
    no_wait = CallRules(
        DEFAULT_RULES.global_cap, DEFAULT_RULES.callback_fallback_after, timedelta()
    )
    assert claim(app, "eva", rules=no_wait) == task


def test_no_wait_when_no_active_agent_speaks_the_language(app: App) -> None:
    w = make_world(app)
    w.agent("eva", languages=("en",))
    w.agent("wen", languages=("zh",))
    task = w.task(w.member(locale="zh"), due_at=TEST_NOW - timedelta(minutes=1))
    with unit(app) as s:
        disable_agent(s, "wen", at=TEST_NOW)
    assert claim(app, "eva") == task  # waiting for nobody would serve nobody


def test_agents_without_languages_and_members_without_a_locale_are_served_as_before(
    app: App,
) -> None:
    w = make_world(app)
    w.agent("wen", languages=("zh",))
    w.agent("any")  # no languages configured
    w.agent("eva", languages=("en",))
    just_due = TEST_NOW - timedelta(minutes=1)
    zh_task = w.task(w.member(locale="zh", points_balance=50), due_at=just_due)
    no_locale = w.task(w.member(locale=None, points_balance=10), due_at=just_due)
    assert claim(app, "any") == zh_task
    assert claim(app, "wen") == no_locale  # a member without a locale is anyone's


def test_the_wait_starts_when_the_calling_window_opens(app: App) -> None:
    w = make_world(app)
    w.agent("eva", languages=("en",))
    w.agent("wen", languages=("zh",))
    # Due at 06:00 New York, before the 08:00 opening of the member's calling window.
    opening = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)
    task = w.task(w.member(locale="zh"), due_at=opening - timedelta(hours=2))
    assert claim(app, "eva", at=opening + WAIT - timedelta(minutes=1)) is None
    with unit(app) as s:
        listed = list_calls(s, at=opening, agent="eva")
    assert [(r.task_id, r.waits_for, r.callable_at) for r in listed] == [
        (task, "language", opening + WAIT)
    ]
    assert "waits for an agent who speaks zh until 2026-03-02T13:15" in listed[0].why
    with unit(app) as s:  # the speaker's list: callable at the opening
        assert list_calls(s, at=opening, agent="wen")[0].callable_now
    assert claim(app, "eva", at=opening + WAIT) == task


def test_a_callback_booked_with_an_agent_is_never_held_from_them(app: App) -> None:
    # eva took the zh member's call after the wait; the member booked a callback with her.
    w = make_world(app)
    w.agent("eva", languages=("en",))
    w.agent("wen", languages=("zh",))
    member = w.member(locale="zh")
    due = TEST_NOW - timedelta(minutes=1)
    callback = w.task(member, due_at=due, kind="callback", assigned_agent="eva")
    with unit(app) as s:
        listed = list_calls(s, at=TEST_NOW, agent="eva")
    assert [(r.task_id, r.callable_now, r.waits_for) for r in listed] == [(callback, True, None)]
    assert claim(app, "eva") == callback
    # A task of the team (not hers) still waits for the speaker.
    w.task(w.member(locale="zh"), due_at=due)
    assert claim(app, "eva", at=TEST_NOW + timedelta(minutes=1)) == callback  # her live claim


def test_compliance_still_decides_for_the_speaker(app: App) -> None:
    w = make_world(app)
    w.agent("wen", languages=("zh",))
    w.task(w.member(locale="zh", consent="opted_out"), due_at=TEST_NOW - timedelta(minutes=1))
    assert claim(app, "wen") is None  # opted out: closed, not served to the speaker either


def run(app: App, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--database-url", app.settings.database_url, *args])
    return result.exit_code, result.output


def test_agents_languages_on_the_command_line(app: App) -> None:
    code, out = run(
        app, "agents", "add", "wen", "--name", "Wen Li", "--language", "zh", "--language", "EN"
    )
    assert code == 0, out
    assert "languages: zh, en" in out
    code, out = run(app, "agents", "list", "--json")
    assert code == 0, out
    assert [a["languages"] for a in json.loads(out)] == [["zh", "en"]]
    code, out = run(app, "agents", "set", "wen", "--language", "es")
    assert code == 0 and "languages es" in out, out
    code, out = run(app, "agents", "set", "wen", "--language", "none")
    assert code == 0 and "languages any" in out, out
    code, out = run(app, "agents", "set", "wen", "--language", "zh-Hant")
    assert code == 1, out
    assert out.strip().splitlines() == [
        "Error: language 'zh-Hant': give an ISO 639 language code alone, e.g. zh, es, en"
    ]
    code, out = run(app, "agents", "show", "wen")
    assert code == 0 and "languages any" in out, out


def test_report_agents_shows_calls_by_the_members_language(app: App) -> None:
    w = make_world(app)
    w.agent("wen", languages=("zh",))
    w.agent("eva", languages=("en",))
    answered = {"reason": "no"}
    calls = [  # (agent, member's locale, disposition)
        ("wen", "zh-Hant-TW", "NOT_INTERESTED"),
        ("wen", "zh", "NO_ANSWER"),
        ("wen", "es-MX", "NO_ANSWER"),
        ("eva", None, "NOT_INTERESTED"),
    ]
    for index, (agent, locale, code) in enumerate(calls):
        task = w.task(w.member(locale=locale))
        fields = answered if code == "NOT_INTERESTED" else {}
        with unit(app) as s:
            log_call(
                s,
                CallInput(task, agent, code, fields, True, None, 60),
                DispositionSet.standard(),
                at=TEST_NOW + timedelta(minutes=index),
            )
    with app.sessions() as s:
        report = agents_report(s, at=TEST_NOW + timedelta(hours=1), settings=app.settings)
    table = next(t for t in report.tables() if t.title.startswith("Calls by the member's"))
    assert table.columns[:4] == ["agent", "language", "calls", "right-party contacts"]
    assert [row[:4] for row in table.rows] == [
        ("eva", "unknown", 1, 1),
        ("wen", "zh", 2, 1),
        ("wen", "es", 1, 0),
    ]
    code, out = run(app, "report", "agents", "--period", "2026-03-02", "--json")
    assert code == 0, out
    assert {"agent": "wen", "language": "zh", "calls": 2, "contacts": 1} in json.loads(out)[
        "by_language"
    ]
