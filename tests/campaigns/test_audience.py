"""Every field operator and event condition, in SQL on both databases and in Python."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from engine import audience
from engine.app import App
from engine.db.models import ActivityEvent, Participant, Program
from engine.errors import InputError
from engine.testing.fakes import make_event, make_participant

from .helpers import TEST_NOW, parse_filter, unit

DAY = timedelta(days=1)
ZONE = "America/New_York"  # make_program's default


@pytest.fixture
def members(app: App, program: Program) -> dict[str, int]:
    """Four members a..d, with events; returns external id -> participant id."""
    with unit(app) as s:
        a = make_participant(
            s,
            program,
            at=TEST_NOW,
            external_id="a",
            status="active",
            tier="gold",
            points_balance=1500,
            last_activity_at=TEST_NOW - 100 * DAY,
            renewal_date=date(2026, 3, 20),
            points_expire_at=date(2026, 4, 1),
            enrolled_at=TEST_NOW - 30 * DAY,
            attributes={"vip": True, "score": "42", "city": "Boston"},
        )
        b = make_participant(
            s,
            program,
            at=TEST_NOW,
            external_id="b",
            status="inactive",
            tier=None,
            points_balance=200,
            last_activity_at=TEST_NOW - 10 * DAY,
            attributes={"vip": "false", "score": 7.5, "city": "austin"},
        )
        c = make_participant(
            s,
            program,
            at=TEST_NOW,
            external_id="c",
            status="lapsed",
            tier="silver",
            points_balance=0,
            last_activity_at=None,
            renewal_date=date(2026, 2, 1),
            enrolled_at=TEST_NOW - 400 * DAY,
            attributes={"score": "n/a", "city": None},
        )
        d = make_participant(
            s,
            program,
            at=TEST_NOW,
            external_id="d",
            status="closed",
            tier="gold",
            points_balance=1000,
            last_activity_at=TEST_NOW - 90 * DAY,
        )
        make_event(s, a, type="login", occurred_at=TEST_NOW - 120 * DAY)
        make_event(
            s,
            a,
            type="redemption",
            occurred_at=TEST_NOW - 5 * DAY,
            points=500,
            amount=Decimal("10.50"),
        )
        make_event(
            s,
            a,
            type="redemption",
            occurred_at=TEST_NOW - 40 * DAY,
            points=300,
            amount=Decimal("5.25"),
        )
        make_event(s, b, type="login", occurred_at=TEST_NOW - 2 * DAY)
        make_event(s, b, type="login", occurred_at=TEST_NOW - 1 * DAY)
        # In the future relative to TEST_NOW: never counts.
        make_event(s, d, type="purchase", occurred_at=TEST_NOW + 1 * DAY)
        make_event(s, d, type="redemption", occurred_at=TEST_NOW - 200 * DAY, points=100)
        return {p.external_id: p.id for p in (a, b, c, d)}


CASES: list[tuple[dict[str, Any], set[str]]] = [
    # text fields
    ({"field": "status", "eq": "active"}, {"a"}),
    ({"field": "status", "ne": "active"}, {"b", "c", "d"}),
    ({"field": "tier", "eq": "gold"}, {"a", "d"}),
    ({"field": "tier", "ne": "gold"}, {"b", "c"}),  # a missing tier is "not gold"
    ({"field": "tier", "in": ["gold", "silver"]}, {"a", "c", "d"}),
    ({"field": "tier", "not_in": ["gold"]}, {"b", "c"}),
    ({"field": "tier", "in": []}, set()),
    ({"field": "tier", "is_null": True}, {"b"}),
    ({"field": "tier", "is_null": False}, {"a", "c", "d"}),
    ({"field": "tier", "gt": "h"}, {"c"}),
    ({"field": "tier", "lte": "gold"}, {"a", "d"}),
    ({"not": {"field": "tier", "eq": "gold"}}, {"b", "c"}),
    # numbers
    ({"field": "points_balance", "gt": 200}, {"a", "d"}),
    ({"field": "points_balance", "gte": 200}, {"a", "b", "d"}),
    ({"field": "points_balance", "lt": 200}, {"c"}),
    ({"field": "points_balance", "lte": 200}, {"b", "c"}),
    ({"field": "points_balance", "eq": 1000}, {"d"}),
    ({"field": "points_balance", "eq": "1500"}, {"a"}),
    ({"field": "points_balance", "gt": 999.5}, {"a", "d"}),
    ({"field": "points_balance", "in": [0, 200]}, {"b", "c"}),
    # datetimes, relative to TEST_NOW
    ({"field": "last_activity_at", "older_than": "90d"}, {"a"}),  # d is exactly 90d: not older
    ({"field": "last_activity_at", "within_last": "90d"}, {"b", "d"}),
    ({"field": "last_activity_at", "within_last": "30d"}, {"b"}),
    ({"field": "last_activity_at", "is_null": True}, {"c"}),
    ({"not": {"field": "last_activity_at", "older_than": "90d"}}, {"b", "c", "d"}),
    ({"field": "last_activity_at", "after": "2026-02-01T00:00:00"}, {"b"}),
    ({"field": "last_activity_at", "before": date(2025, 12, 1)}, {"a"}),
    ({"field": "enrolled_at", "within_last": "60d"}, {"a"}),
    ({"field": "enrolled_at", "before": date(2025, 6, 1)}, {"c"}),
    ({"field": "enrolled_at", "gt": "2025-06-01T00:00:00+00:00"}, {"a"}),
    # dates (calendar dates in the program's zone)
    ({"field": "renewal_date", "within_next": "30d"}, {"a"}),
    ({"field": "renewal_date", "older_than": "20d"}, {"c"}),
    ({"field": "renewal_date", "before": date(2026, 3, 1)}, {"c"}),
    ({"field": "renewal_date", "after": date(2026, 3, 1)}, {"a"}),
    ({"field": "renewal_date", "eq": date(2026, 3, 20)}, {"a"}),
    ({"field": "points_expire_at", "within_next": "30d"}, {"a"}),  # 2026-04-01: inclusive
    ({"field": "points_expire_at", "within_next": "29d"}, set()),
    # attributes
    ({"field": "attributes.vip", "eq": True}, {"a"}),
    ({"field": "attributes.vip", "eq": False}, {"b"}),  # the string "false" from a CSV
    ({"field": "attributes.vip", "ne": True}, {"b", "c", "d"}),
    ({"field": "attributes.score", "gt": 10}, {"a"}),  # "42" is a plain decimal string
    ({"field": "attributes.score", "lt": 10}, {"b"}),
    ({"field": "attributes.score", "eq": 7.5}, {"b"}),
    ({"field": "attributes.score", "eq": "42"}, {"a"}),
    ({"field": "attributes.score", "eq": "7.5"}, set()),  # a JSON number is not text
    ({"field": "attributes.score", "not_in": [42, 7.5]}, {"c", "d"}),
    ({"field": "attributes.city", "lt": "C"}, {"a"}),  # code-point order: "austin" > "C"
    ({"field": "attributes.city", "in": ["Boston", "austin"]}, {"a", "b"}),
    ({"field": "attributes.city", "not_in": ["Boston"]}, {"b", "c", "d"}),
    ({"field": "attributes.city", "is_null": True}, {"c", "d"}),  # JSON null and absent
    ({"field": "attributes.city", "is_null": False}, {"a", "b"}),
    ({"field": "attributes.nothing", "eq": 1}, set()),
    # events
    ({"event": "login"}, {"a", "b"}),
    ({"event": "login", "within_last": "90d"}, {"b"}),
    ({"not": {"event": "login", "within_last": "90d"}}, {"a", "c", "d"}),
    ({"event": "redemption", "count": {"gte": 2}}, {"a"}),
    ({"event": "redemption", "count": {"eq": 0}}, {"b", "c"}),
    ({"event": "login", "within_last": "7d", "count": {"eq": 2}}, {"b"}),
    ({"event": "redemption", "within_last": "30d", "points": {"gte": 500}}, {"a"}),
    ({"event": "redemption", "points": {"lt": 200}}, {"b", "c", "d"}),
    ({"event": "redemption", "amount": {"gt": 15}}, {"a"}),
    ({"event": "redemption", "amount": {"eq": "15.75"}}, {"a"}),
    ({"event": "redemption", "count": {"gte": 1}, "points": {"gt": 100}}, {"a"}),
    ({"event": ["purchase", "redemption"], "within_last": "300d"}, {"a", "d"}),
    ({"event": "purchase"}, set()),  # the only purchase is after `at`
    # combinations
    (
        {"all": [{"field": "tier", "eq": "gold"}, {"field": "points_balance", "gte": 1200}]},
        {"a"},
    ),
    ({"any": [{"field": "tier", "eq": "silver"}, {"event": "login"}]}, {"a", "b", "c"}),
    (
        {
            "all": [
                {"field": "status", "in": ["active", "inactive"]},
                {"not": {"event": "login", "within_last": "90d"}},
            ]
        },
        {"a"},
    ),
]


def _python_members(app: App, filter_: Any) -> set[str]:
    with unit(app) as s:
        matched = set()
        for participant in s.scalars(select(Participant)):
            events = [
                audience.Event(e.type, e.occurred_at, e.points, e.amount)
                for e in s.scalars(
                    select(ActivityEvent).where(ActivityEvent.participant_id == participant.id)
                )
            ]
            values = audience.participant_values(participant)
            if audience.evaluate(filter_, values, events, TEST_NOW, tz=ZONE):
                matched.add(participant.external_id)
        return matched


def test_every_operator_in_sql_and_python(
    app: App, program: Program, members: dict[str, int]
) -> None:
    by_id = {v: k for k, v in members.items()}
    failures = []
    for data, expected in CASES:
        filter_ = parse_filter(data)
        query = audience.compile_audience(filter_, program_id=program.id, at=TEST_NOW, tz=ZONE)
        with unit(app) as s:
            got_sql = {by_id[i] for i in s.scalars(query)}
        got_python = _python_members(app, filter_)
        if got_sql != expected or got_python != expected:
            failures.append(f"{data}: sql {sorted(got_sql)} python {sorted(got_python)}")
    assert not failures, "\n".join(failures)


def test_audience_is_scoped_to_the_program(app: App, program: Program) -> None:
    from engine.testing.fakes import make_program

    with unit(app) as s:
        other = make_program(s, at=TEST_NOW, key="other")
        make_participant(s, program, at=TEST_NOW, external_id="mine")
        make_participant(s, other, at=TEST_NOW, external_id="theirs")
    query = audience.compile_audience(
        parse_filter({"field": "status", "eq": "active"}), program_id=program.id, at=TEST_NOW
    )
    with unit(app) as s:
        ids = set(s.scalars(query))
        names = set(s.scalars(select(Participant.external_id).where(Participant.id.in_(ids))))
    assert names == {"mine"}


def test_compiles_without_a_database_on_both_dialects() -> None:
    filter_ = parse_filter(
        {
            "all": [
                {"field": "attributes.score", "gt": 5},
                {"field": "tier", "lt": "m"},
                {"event": "login", "within_last": "90d", "count": {"gte": 2}},
            ]
        }
    )
    query = audience.compile_audience(filter_, program_id=1, at=TEST_NOW)
    pg = str(query.compile(dialect=postgresql.dialect()))
    lite = str(query.compile(dialect=sqlite.dialect()))
    assert "jsonb_typeof" in pg and 'COLLATE "C"' in pg
    assert "json_type" in lite and "COLLATE" not in lite
    # Relative dates are bound parameters, not SQL date arithmetic.
    params = query.compile(dialect=sqlite.dialect()).params
    assert TEST_NOW - timedelta(days=90) in params.values()


def test_explain_tree_shows_values() -> None:
    filter_ = parse_filter(
        {
            "all": [
                {"field": "status", "in": ["active", "inactive"]},
                {"field": "last_activity_at", "older_than": "90d"},
                {"not": {"event": "login", "within_last": "90d"}},
            ]
        }
    )
    values = {"status": "active", "last_activity_at": TEST_NOW - 30 * DAY, "attributes": {}}
    events = [audience.Event("login", TEST_NOW - 3 * DAY)]
    tree = audience.explain(filter_, values, events, TEST_NOW)
    assert not tree.passed
    status, activity, no_login = tree.children
    assert (status.passed, status.actual) == (True, "active")
    assert (activity.passed, activity.actual) == (False, TEST_NOW - 30 * DAY)
    assert "2025-12-02" in activity.condition  # the resolved threshold is shown
    assert not no_login.passed
    assert no_login.children[0].actual["count"] == 1


def test_operand_errors_are_input_errors() -> None:
    with pytest.raises(InputError, match="points_balance is a number"):
        audience.compile_audience(
            parse_filter({"field": "points_balance", "gt": "lots"}), program_id=1, at=TEST_NOW
        )
    with pytest.raises(InputError, match="does not apply to true/false"):
        audience.compile_audience(
            parse_filter({"field": "attributes.vip", "gt": True}), program_id=1, at=TEST_NOW
        )


def test_naive_at_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        audience.compile_audience(
            parse_filter({"field": "status", "eq": "active"}),
            program_id=1,
            at=datetime(2026, 1, 1),
        )
    assert UTC  # the module's instants are all UTC


def test_a_condition_built_on_a_bound_instant_matches_as_one_built_on_the_instant(
    app: App, program: Program, members: dict[str, int]
) -> None:
    """One statement per filter, built once with its instant bound (the claim's standing
    check, #19), run at two instants: the members of each are those of a statement built on
    that instant."""
    by_id = {v: k for k, v in members.items()}
    later = TEST_NOW + 95 * DAY  # past some of the relative bounds of the cases
    failures = []
    moved = 0  # cases whose members differ between the two instants
    for data, _expected in CASES:
        filter_ = parse_filter(data)
        at = audience.BoundAt("test_at_")
        bound = select(Participant.id).where(
            Participant.program_id == program.id,
            audience.audience_condition(filter_, at=at, tz=ZONE),
        )
        seen = []
        for instant in (TEST_NOW, later):
            built = audience.compile_audience(filter_, program_id=program.id, at=instant, tz=ZONE)
            with unit(app) as s:
                want = {by_id[i] for i in s.scalars(built)}
                got = {by_id[i] for i in s.scalars(bound, at.params(instant))}
            if got != want:
                failures.append(f"{data} at {instant}: bound {sorted(got)} built {sorted(want)}")
            seen.append(want)
        moved += seen[0] != seen[1]
    assert not failures, "\n".join(failures)
    assert moved >= 3, moved  # the second instant tells a frozen instant from a bound one
