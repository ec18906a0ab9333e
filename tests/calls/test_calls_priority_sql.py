"""A step ranked by a participant attribute is read in SQL in the order `calls list` ranks it
in Python (engine/calls/priority.py), ties included: numbers and booleans by value (exact for
large integers), text in code-point order after them (a number written as text is text), a
list or object after every text, empty values last in both directions; equal values keep
due time, then id. Claim-next serves the tasks in exactly that order."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from calls_helpers import TEST_NOW, World, make_world, unit

from engine.app import App
from engine.calls.listing import list_calls
from engine.calls.tasks import claim_next
from engine.db.models import CallTask

MISSING = object()  # no such attribute at all
BIG = 10**17  # floats cannot tell BIG from BIG + 1

# label, value of attributes.score, minutes overdue (more: due earlier, served first on a tie)
MEMBERS: list[tuple[str, Any, int]] = [
    ("three", 3, 10),
    ("two-and-a-half", 2.5, 10),
    ("true", True, 10),
    ("one", 1, 20),  # ties with true, due earlier
    ("false", False, 10),
    ("minus-four", -4, 10),
    ("text-10", "10", 10),
    ("text-9", "9", 10),
    ("Zeta", "Zeta", 10),
    ("alpha", "alpha", 10),
    ("elan", "élan", 10),
    ("null", None, 10),
    ("missing", MISSING, 20),  # ties with null, due earlier
    ("list", [1, 2], 10),
    ("object", {"x": 1}, 20),  # ties with the list, due earlier
    ("three-again", 3, 20),  # ties with three, due earlier
    ("big-plus-one", BIG + 1, 10),
    ("big", BIG, 10),
]
ASCENDING = [
    "minus-four",
    "false",
    "one",
    "true",
    "two-and-a-half",
    "three-again",
    "three",
    "big",
    "big-plus-one",
    "text-10",
    "text-9",
    "Zeta",
    "alpha",
    "elan",
    "object",
    "list",
    "missing",
    "null",
]
DESCENDING = [
    "object",
    "list",
    "elan",
    "alpha",
    "Zeta",
    "text-9",
    "text-10",
    "big-plus-one",
    "big",
    "three-again",
    "three",
    "two-and-a-half",
    "one",
    "true",
    "false",
    "minus-four",
    "missing",
    "null",
]


def _world(app: App, order: str, keys: list[dict[str, str]] | None = None) -> tuple[World, dict]:
    keys = keys or [{"field": "attributes.score", "order": order}]
    w = make_world(app, step={"priority": keys})
    w.agent("ana")
    labels = {}
    for label, value, overdue in MEMBERS:
        attributes = {} if value is MISSING else {"score": value}
        pid = w.member(attributes=attributes, points_balance=len(label))
        labels[w.task(pid, due_at=TEST_NOW - timedelta(minutes=overdue))] = label
    return w, labels


def _listed(app: App, labels: dict[int, str]) -> list[str]:
    with unit(app) as s:
        return [labels[r.task_id] for r in list_calls(s, at=TEST_NOW, agent="ana")]


def _claimed(app: App, labels: dict[int, str]) -> list[str]:
    served = []
    while True:
        with unit(app) as s:
            claim = claim_next(s, "ana", at=TEST_NOW)
            if claim is None:
                return served
            row = s.get(CallTask, claim.task_id)
            assert row is not None
            row.status = "closed"  # next claim: the next task
            served.append(labels[claim.task_id])


@pytest.mark.parametrize(("order", "expected"), [("asc", ASCENDING), ("desc", DESCENDING)])
def test_an_attribute_ranked_step_is_served_in_the_listed_order(
    app: App, order: str, expected: list[str]
) -> None:
    _, labels = _world(app, order)
    assert _listed(app, labels) == expected
    assert _claimed(app, labels) == expected


def test_ties_on_the_attribute_follow_the_next_key(app: App) -> None:
    # The second key (a column, descending) orders the ties of the first, before due time:
    # here by the length of the label.
    _, labels = _world(
        app,
        "asc",
        [
            {"field": "attributes.score", "order": "asc"},
            {"field": "points_balance", "order": "desc"},
        ],
    )
    expected = [*ASCENDING]
    expected[2:4] = ["true", "one"]  # "true" is longer than "one"
    expected[5:7] = ["three-again", "three"]
    expected[-4:] = ["object", "list", "missing", "null"]  # "object" longer; "missing" too
    assert _listed(app, labels) == expected
    assert _claimed(app, labels) == expected
