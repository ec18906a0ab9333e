"""A run's claim form (engine/calls/claim_form.py, #18): what a claim and its call sheet read of
the run's definition, stored as JSON at launch and read back without pydantic, says what the
definition says: the same steps' priority keys, scripts, talking points, offers and
cross-sells, call window and frequency cap, the campaign's name and description, and a
standing filter that compiles to the same SQL with the same parameters on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from calls_helpers import TEST_NOW, make_world, unit
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from engine.app import App
from engine.audience import audience_condition
from engine.calls.claim_form import FORM_VERSION, claim_form_of, read_claim_form
from engine.calls.scripts import call_sheet
from engine.calls.tasks import claim_next
from engine.db.tables.runs import campaign_runs
from engine.definitions.loader import parse_definition
from engine.definitions.standing import standing_filter
from engine.definitions.stored import stored_definition

STANDING = [
    "status",
    "tier",
    "points_balance",
    "renewal_date",
    "last_activity_at",
    "enrolled_at",
    "points_expire_at",
    "email",
    "attributes.score",
    "attributes.vip",
    "attributes.region",
    "attributes.since",
]
AUDIENCE = {
    "all": [
        {"field": "status", "eq": "active"},
        {"field": "tier", "in": ["gold", "silver"]},
        {"field": "tier", "not_in": ["bronze"]},
        {"field": "points_balance", "gte": 100},
        {"field": "points_balance", "lt": 99999.5},
        {"field": "renewal_date", "within_next": "30d"},
        {"field": "last_activity_at", "within_last": "36h"},
        {"field": "enrolled_at", "older_than": "2w"},
        {"field": "points_expire_at", "after": "2026-01-01"},
        {"field": "enrolled_at", "before": "2026-06-01T09:30:00"},
        {"field": "email", "is_null": False},
        {"field": "attributes.score", "gt": 3},
        {"field": "attributes.vip", "eq": True},
        {"field": "attributes.region", "ne": "north"},
        {"field": "attributes.since", "lte": "2025-12-31"},
        {"any": [{"field": "tier", "eq": "gold"}, {"not": {"field": "tier", "is_null": True}}]},
        {"event": "redemption", "within_last": "90d"},  # never standing: left out of the form
    ]
}


def _definition(**fields: object) -> object:
    data = {
        "name": "renew-calls",
        "program": "loyalty",
        "audience": AUDIENCE,
        "exclusions": [{"field": "status", "eq": "closed"}],
        "standing": STANDING,
        "goal": {"events": ["renewal"], "window": "30d"},
        "call_window": {"start": "09:30", "end": "18:00", "days": ["mon", "tue", "sat"]},
        "frequency_cap": {"max": 2, "per": "7d"},
        "steps": [
            {"id": "email-1", "channel": "email", "template": "renewal"},
            {
                "id": "call-1",
                "channel": "call",
                "script": "renewal_due",
                "priority": [
                    {"field": "points_balance", "order": "desc"},
                    {"field": "attributes.score"},
                ],
            },
        ],
    }
    data.update(fields)
    return parse_definition(yaml.safe_dump(data, sort_keys=False), "renew-calls.yaml").definition


def _stored(definition: object) -> object:
    """The form as the database gives it back: through JSON."""
    return read_claim_form(json.loads(json.dumps(claim_form_of(definition))))  # type: ignore[arg-type]


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "pg"])
def test_the_standing_filter_compiles_to_the_same_sql_and_parameters(dialect: object) -> None:
    definition = _definition()
    form = _stored(definition)
    assert form is not None
    at = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    original = audience_condition(standing_filter(definition), at=at, tz="America/New_York")
    stored = audience_condition(form.standing, at=at, tz="America/New_York")
    mine, theirs = stored.compile(dialect=dialect), original.compile(dialect=dialect)
    assert str(mine) == str(theirs)
    assert mine.params == theirs.params
    # Not vacuous: every standing condition is in it, and the event condition is not.
    assert str(theirs).count("participants.attributes") >= 4
    assert "activity_events" not in str(theirs)


def test_the_form_holds_the_steps_window_and_cap_of_the_definition() -> None:
    definition = _definition()
    form = _stored(definition)
    assert form is not None
    for step in definition.steps:  # type: ignore[attr-defined]
        assert form.step(step.id).id == step.id
        assert [(k.field, k.order) for k in form.step(step.id).priority] == [
            (k.field, k.order) for k in step.priority
        ]
    with pytest.raises(KeyError):
        form.step("no-such-step")
    window = definition.call_window  # type: ignore[attr-defined]
    assert form.call_window is not None
    assert (form.call_window.start, form.call_window.end, list(form.call_window.days)) == (
        window.start,
        window.end,
        list(window.days),
    )
    cap = definition.frequency_cap  # type: ignore[attr-defined]
    assert form.frequency_cap is not None
    assert (form.frequency_cap.max, form.frequency_cap.per) == (cap.max, cap.per)


def test_the_form_holds_what_the_call_sheet_reads_of_the_definition() -> None:
    # The sheet's script, talking points, offer and cross-sell, and the campaign's name and
    # description for the script's context (engine/calls/scripts.py), as the definition says.
    call = {
        "id": "call-1",
        "channel": "call",
        "script": "renewal_due",
        "talking_points": ["Renewal date", "Benefits used: 1.5x points"],
        "offer": "Renew this month",
        "cross_sell": "Upgrade to Gold",
    }
    bare = {"id": "call-2", "channel": "call", "script": "winback"}
    definition = _definition(description="Members due for renewal", steps=[call, bare])
    form = _stored(definition)
    assert form is not None
    assert (form.name, form.description) == ("renew-calls", "Members due for renewal")
    for step in definition.steps:  # type: ignore[attr-defined]
        stored = form.step(step.id)
        assert (stored.script, list(stored.talking_points), stored.offer, stored.cross_sell) == (
            step.script,
            step.talking_points,
            step.offer,
            step.cross_sell,
        )
    assert form.step("call-2").talking_points == () and form.step("call-2").offer is None


def test_a_campaign_without_window_cap_or_standing_conditions() -> None:
    form = _stored(_definition(call_window=None, frequency_cap=None, standing=[]))
    assert form is not None
    assert (form.call_window, form.frequency_cap, form.standing) == (None, None, None)


def _version_1(stored: dict[str, Any]) -> dict[str, Any]:
    """``stored`` as 0036 and launches before the call sheet's fields stored it."""
    steps = [{"id": step["id"], "priority": step["priority"]} for step in stored["steps"]]
    v1 = {key: value for key, value in stored.items() if key not in ("name", "description")}
    return {**v1, "version": 1, "steps": steps}


def test_a_form_of_version_1_still_serves_claims_but_not_the_sheet() -> None:
    definition = _definition()
    current = _stored(definition)
    older = read_claim_form(json.loads(json.dumps(_version_1(claim_form_of(definition)))))
    assert current is not None and older is not None
    assert (current.sheet, older.sheet) == (True, False)
    assert older.steps.keys() == current.steps.keys()
    for step_id, step in older.steps.items():
        assert step.priority == current.steps[step_id].priority
    claim_reads = ("call_window", "frequency_cap", "standing")
    assert [getattr(older, n) for n in claim_reads] == [getattr(current, n) for n in claim_reads]


def test_a_form_of_another_version_or_none_is_not_read() -> None:
    stored = claim_form_of(_definition())
    assert stored["version"] == FORM_VERSION
    assert read_claim_form({**stored, "version": FORM_VERSION + 1}) is None
    assert read_claim_form(None) is None


@pytest.mark.parametrize("stored", [None, "older"], ids=["no form", "older form"])
def test_a_run_without_a_form_of_this_version_shows_the_same_sheet(
    app: App, stored: str | None
) -> None:
    # A run whose form is missing or of version 1 (0036's backfill, a launch before the
    # sheet's fields) shows the sheet from its definition: the same sheet.
    w = make_world(app, description="Members due for renewal")
    w.agent("ana")
    member = w.member()
    task = w.task(member)
    with unit(app) as s:
        claim = claim_next(s, "ana", at=TEST_NOW)
        assert claim is not None and claim.task_id == task
    stored_definition.cache_clear()
    with unit(app) as s:
        from_form = call_sheet(s, task, settings=app.settings, at=TEST_NOW)
    assert stored_definition.cache_info().currsize == 0  # read from the form
    with unit(app) as s:
        form = s.execute(select(campaign_runs.c.claim_form)).scalar_one()
        older = None if stored is None else _version_1(form)
        s.execute(update(campaign_runs).values(claim_form=older))
    with unit(app) as s:
        from_definition = call_sheet(s, task, settings=app.settings, at=TEST_NOW)
    assert stored_definition.cache_info().currsize == 1  # worked out from the definition
    assert from_definition == from_form
    # Not vacuous: the sheet holds what it read of the run.
    assert from_form.script is not None and "RENEWAL CALL: renew-calls (call-1)" in from_form.script
    assert from_form.talking_points == ["Renewal date and plan", "Benefits used this year"]
    assert (from_form.offer, from_form.cross_sell) == (
        "Renew this month and keep your tier",
        "Upgrade to Gold",
    )
