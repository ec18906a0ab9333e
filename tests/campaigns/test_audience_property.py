"""Property: for random members, events and filters, the SQL audience (on SQLite and
PostgreSQL) is exactly the set the Python evaluator accepts."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert

from engine import audience, sampling
from engine.app import App
from engine.db.models import ActivityEvent, Participant, Program

from .helpers import TEST_NOW, parse_filter, unit

ZONE = "America/New_York"
DAY = timedelta(days=1)

# Offsets around the instants the filters use, so boundaries (exactly 30d ago...) occur.
day_offsets = st.sampled_from([-400, -120, -91, -90, -89, -31, -30, -29, -7, -1, 0, 1, 29, 30, 45])
hour_offsets = st.sampled_from([-5, -1, 0, 1, 9])
instants = st.builds(
    lambda d, h: TEST_NOW + d * DAY + h * timedelta(hours=1), day_offsets, hour_offsets
)
dates = st.builds(lambda d: TEST_NOW.date() + d * DAY, day_offsets)
two_places = st.decimals(min_value=-1000, max_value=1000, places=2)
texts = st.sampled_from(["gold", "Gold", "silver", "über", "", "g"])
durations = st.sampled_from(["1d", "7d", "30d", "90d", "36h"])

attribute_values = st.one_of(
    st.sampled_from(["5", "-2.5", "10", "abc", "true", "false", "Boston", "2026-03-01", ""]),
    st.integers(-20, 20),
    two_places.map(float),
    st.booleans(),
    st.none(),
)


@st.composite
def members(draw: st.DrawFn) -> dict[str, Any]:
    attributes = draw(st.dictionaries(st.sampled_from(["a", "b"]), attribute_values, max_size=2))
    return {
        "status": draw(st.sampled_from(["active", "inactive", "lapsed", "closed"])),
        "tier": draw(st.one_of(st.none(), texts)),
        "locale": draw(st.sampled_from([None, "en", "es", "zh"])),
        "points_balance": draw(st.integers(0, 3000)),
        "points_expiring": draw(st.sampled_from([0, 100, 500])),
        "last_activity_at": draw(st.one_of(st.none(), instants)),
        "enrolled_at": draw(st.one_of(st.none(), instants)),
        "renewal_date": draw(st.one_of(st.none(), dates)),
        "points_expire_at": draw(st.one_of(st.none(), dates)),
        "attributes": attributes,
        "events": draw(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "type": st.sampled_from(["login", "redemption", "purchase"]),
                        "occurred_at": instants,
                        "points": st.one_of(st.none(), st.integers(-100, 500)),
                        "amount": st.one_of(st.none(), two_places),
                    }
                ),
                max_size=4,
            )
        ),
    }


def comparisons(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda op, v: {op: v}, st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]), values
    )


def _field(name: str, values: st.SearchStrategy[Any], extra: list[str]) -> st.SearchStrategy[Any]:
    ops = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "is_null", *extra]

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        op = draw(st.sampled_from(ops))
        if op in ("in", "not_in"):
            operand: Any = draw(st.lists(values, max_size=3))
        elif op == "is_null":
            operand = draw(st.booleans())
        elif op in ("older_than", "within_last", "within_next"):
            operand = draw(durations)
        else:
            operand = draw(values)
        return {"field": name, op: operand}

    return build()


relative = ["older_than", "within_last", "within_next", "before", "after"]
field_conditions = st.one_of(
    _field("status", st.sampled_from(["active", "inactive", "lapsed"]), []),
    _field("tier", texts, []),
    _field("locale", st.sampled_from(["en", "es", "zh"]), []),
    _field("points_balance", st.one_of(st.integers(0, 3000), two_places), []),
    _field("last_activity_at", instants, relative),
    _field("enrolled_at", instants, relative),
    _field("renewal_date", dates, relative),
    _field("points_expire_at", dates, relative),
)


@st.composite
def attribute_conditions(draw: st.DrawFn) -> dict[str, Any]:
    name = "attributes." + draw(st.sampled_from(["a", "b"]))
    kind = draw(st.sampled_from(["number", "text", "bool", "null"]))
    if kind == "null":
        return {"field": name, "is_null": draw(st.booleans())}
    if kind == "bool":
        op = draw(st.sampled_from(["eq", "ne", "in", "not_in"]))
        values: st.SearchStrategy[Any] = st.booleans()
    else:
        op = draw(st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in"]))
        values = (
            st.one_of(st.integers(-20, 20), two_places)
            if kind == "number"
            else st.sampled_from(["5", "abc", "Boston", "b", "true", "2026-03-01"])
        )
    operand = draw(st.lists(values, max_size=3)) if op in ("in", "not_in") else draw(values)
    return {"field": name, op: operand}


@st.composite
def event_conditions(draw: st.DrawFn) -> dict[str, Any]:
    cond: dict[str, Any] = {
        "event": draw(
            st.one_of(
                st.sampled_from(["login", "redemption"]),
                st.lists(
                    st.sampled_from(["login", "redemption", "purchase"]), min_size=1, max_size=2
                ),
            )
        )
    }
    if draw(st.booleans()):
        cond["within_last"] = draw(durations)
    for name, values in (
        ("count", st.integers(0, 3)),
        ("points", st.integers(-100, 600)),
        ("amount", two_places),
    ):
        if draw(st.integers(0, 3)) == 0:
            cond[name] = draw(comparisons(values))
    return cond


leaves = st.one_of(field_conditions, attribute_conditions(), event_conditions())
filters = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, children),
    ),
    max_leaves=6,
)


def _insert(app: App, program: Program, people: list[dict[str, Any]]) -> list[int]:
    ids = []
    with unit(app) as s:
        s.execute(delete(ActivityEvent))
        s.execute(delete(Participant))
        for n, person in enumerate(people):
            fields = {k: v for k, v in person.items() if k != "events"}
            participant = Participant(
                program_id=program.id,
                external_id=f"H{n}",
                sample_key=sampling.sample_key(program.key, f"H{n}"),
                created_at=TEST_NOW,
                updated_at=TEST_NOW,
                **fields,
            )
            s.add(participant)
            s.flush()
            ids.append(participant.id)
            if person["events"]:
                s.execute(
                    insert(ActivityEvent),
                    [
                        {
                            **event,
                            "program_id": program.id,
                            "participant_id": participant.id,
                            "reference": f"H{n}-{i}",
                            "source": "test",
                            "created_at": TEST_NOW,
                        }
                        for i, event in enumerate(person["events"])
                    ],
                )
    return ids


def test_sql_audience_equals_python_evaluator(app: App, program: Program) -> None:
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(people=st.lists(members(), min_size=1, max_size=6), data=filters)
    def check(people: list[dict[str, Any]], data: dict[str, Any]) -> None:
        filter_ = parse_filter(data)
        ids = _insert(app, program, people)
        query = audience.compile_audience(filter_, program_id=program.id, at=TEST_NOW, tz=ZONE)
        with unit(app) as s:
            got = set(s.scalars(query))
        expected = set()
        for pid, person in zip(ids, people, strict=True):
            values = {k: v for k, v in person.items() if k != "events"}
            events = [audience.Event(**e) for e in person["events"]]
            if audience.evaluate(filter_, values, events, TEST_NOW, tz=ZONE):
                expected.add(pid)
        assert got == expected, (data, people)

    check()


def test_the_strategies_cover_the_language() -> None:
    """Guard against a strategy silently narrowing: every operator can be drawn."""
    seen: set[str] = set()

    @settings(max_examples=300, deadline=None)
    @given(leaves)
    def collect(leaf: dict[str, Any]) -> None:
        seen.update(k for k in leaf if k not in ("field",))

    collect()
    expected = {
        "eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "is_null", "older_than",
        "within_last", "within_next", "before", "after", "event", "count", "points", "amount",
    }  # fmt: skip
    assert expected <= seen
    assert isinstance(date.today(), date) and Decimal(1)
