"""POST /webhooks/events: activity events from a program's own systems, on both databases.

The token guards the endpoint; events are validated and stored by the import's own code,
idempotent on (program, reference); the goal events of enrolled members inside the window
become conversions whose source is ``webhook``; bad events are listed, never lost in silence.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from starlette.testclient import TestClient
from webhook_helpers import EVENTS_PATH, EVENTS_TOKEN, Hooks, World

from engine.app import App, build_app
from engine.clock import FrozenClock
from engine.db.models import ActivityEvent, Conversion, Enrollment, Participant
from engine.settings import Settings, SettingsError
from engine.testing.fakes import make_program
from engine.webhooks.activity_events import MAX_EVENTS
from engine.webhooks.app import build_asgi_app


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _enroll(world: World, participant: Participant, *, group: str, at: datetime) -> int:
    with world.app.sessions() as session, session.begin():
        enrollment = Enrollment(
            run_id=world.run_id,
            campaign="test-campaign",
            participant_id=participant.id,
            group=group,
            enrolled_at=at,
            state="active",
            next_action_at=None,
            next_step_index=1,
        )
        session.add(enrollment)
        session.flush()
        return enrollment.id


def _stored(app: App) -> list[ActivityEvent]:
    with app.sessions() as session:
        return list(session.scalars(select(ActivityEvent).order_by(ActivityEvent.id)))


def _conversions(app: App) -> list[Conversion]:
    with app.sessions() as session:
        return list(session.scalars(select(Conversion).order_by(Conversion.id)))


def _last_activity(app: App, participant_id: int) -> datetime | None:
    with app.sessions() as session:
        participant = session.get(Participant, participant_id)
        assert participant is not None
        return participant.last_activity_at


# ---------------------------------------------------------------- authentication


def test_no_token_or_a_wrong_one_is_refused_and_nothing_is_written(
    hooks: Hooks, world: World
) -> None:
    member = world.participant(external_id="M1")
    event = {"external_id": "M1", "type": "login", "occurred_at": _iso(world.at)}
    for token in (None, "", "wrong-token-wrong-token-wrong", EVENTS_TOKEN + "x", EVENTS_TOKEN[:-1]):
        response = hooks.activity([event], token=token)
        assert response.status_code == 403, (token, response.text)
    for header in (f"Basic {EVENTS_TOKEN}", EVENTS_TOKEN, f"Bearer  {EVENTS_TOKEN}x"):
        response = hooks.client.post(EVENTS_PATH, json=[event], headers={"Authorization": header})
        assert response.status_code == 403, header
    # A refused request is not parsed: a body that is not JSON is still a 403.
    assert hooks.activity(b"{not json", token="nope").status_code == 403
    assert _stored(world.app) == []
    assert _last_activity(world.app, member.id) is None
    # The right token, any case of the scheme: accepted.
    response = hooks.client.post(
        EVENTS_PATH, json=event, headers={"Authorization": f"bearer {EVENTS_TOKEN}"}
    )
    assert response.status_code == 200 and response.json()["accepted"] == 1


def test_without_the_setting_every_request_is_refused(
    webhook_settings: Settings, clock: FrozenClock
) -> None:
    closed = webhook_settings.model_copy(update={"events_webhook_token": None})
    application = build_app(closed, clock=clock)
    try:
        world = World(application)
        world.participant(external_id="M1")
        event = {"external_id": "M1", "type": "login", "occurred_at": _iso(world.at)}
        with TestClient(build_asgi_app(application)) as client:
            response = client.post(
                EVENTS_PATH, json=event, headers={"Authorization": f"Bearer {EVENTS_TOKEN}"}
            )
        assert response.status_code == 403
        assert "CAMPAIGN_EVENTS_WEBHOOK_TOKEN is not set" in response.json()["error"]
        assert _stored(application) == []
    finally:
        application.close()


def test_the_token_setting_is_checked_at_start_up() -> None:
    assert Settings(events_webhook_token="   ").events_webhook_token is None
    assert Settings(events_webhook_token=f" {EVENTS_TOKEN} ").events_webhook_token == EVENTS_TOKEN
    with pytest.raises(SettingsError, match="at least 16 characters"):
        Settings(events_webhook_token="short")


# ---------------------------------------------------------------- storing and converting


def test_good_batch_stores_events_converts_and_a_replay_changes_nothing(
    hooks: Hooks, world: World
) -> None:
    now = world.at
    treated = world.participant(external_id="T1", last_activity_at=now - timedelta(days=60))
    late_holdout = world.participant(external_id="H1", last_activity_at=None)
    # The run's goal (engine.testing.TEST_DEFINITION) is a login within 30 days.
    treated_enrollment = _enroll(world, treated, group="treatment", at=now - timedelta(days=10))
    holdout_enrollment = _enroll(world, late_holdout, group="holdout", at=now - timedelta(days=40))
    batch = [
        {
            "external_id": "T1",
            "type": "login",
            "occurred_at": _iso(now - timedelta(days=2)),
            "points": 50,
            "amount": "19.99",
            "reference": "loy-1",
        },
        # Not a goal type: stored, no conversion (the login above is the first goal event).
        {
            "External_ID": "T1",
            "TYPE": "redemption",
            "occurred_at": _iso(now - timedelta(days=1)),
            "points": -500,
            "reference": "loy-2",
        },
        # A goal event 35 days after the holdout member's enrollment: outside the window.
        {
            "external_id": "H1",
            "type": "login",
            "occurred_at": _iso(now - timedelta(days=5)),
            "program": "loyalty",
        },
    ]
    response = hooks.activity(batch)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "received": 3,
        "accepted": 3,
        "duplicates": 0,
        "rejected": [],
        "conversions": 1,
    }

    stored = _stored(world.app)
    assert [(e.type, e.points, e.amount, e.source) for e in stored] == [
        ("login", 50, Decimal("19.99"), "webhook:events"),
        ("redemption", -500, None, "webhook:events"),
        ("login", None, None, "webhook:events"),
    ]
    assert stored[2].reference.startswith("digest:")  # no reference: the content's digest
    (conversion,) = _conversions(world.app)
    assert conversion.enrollment_id == treated_enrollment
    assert (conversion.source, conversion.group, conversion.event_type) == (
        "webhook",
        "treatment",
        "login",
    )
    assert conversion.event_id == stored[0].id and conversion.amount == Decimal("19.99")
    assert holdout_enrollment not in {c.enrollment_id for c in _conversions(world.app)}
    with world.app.sessions() as session:
        states = {i: s for i, s in session.execute(select(Enrollment.id, Enrollment.state))}
    assert states == {treated_enrollment: "converted", holdout_enrollment: "active"}
    assert _last_activity(world.app, treated.id) == now - timedelta(days=1)
    assert _last_activity(world.app, late_holdout.id) == now - timedelta(days=5)

    # The sender retries the same batch: nothing new, nothing changed.
    again = hooks.activity(batch)
    assert again.status_code == 200
    assert again.json() == {
        "received": 3,
        "accepted": 0,
        "duplicates": 3,
        "rejected": [],
        "conversions": 0,
    }
    assert [(e.id, e.occurred_at) for e in _stored(world.app)] == [
        (e.id, e.occurred_at) for e in stored
    ]
    assert len(_conversions(world.app)) == 1

    # An older event is stored but never moves last_activity_at back.
    older = {"external_id": "T1", "type": "payment", "occurred_at": _iso(now - timedelta(days=9))}
    assert hooks.activity(older).json()["accepted"] == 1
    assert _last_activity(world.app, treated.id) == now - timedelta(days=1)


def test_a_holdout_member_inside_the_window_converts_too(hooks: Hooks, world: World) -> None:
    member = world.participant(external_id="H2")
    enrollment = _enroll(world, member, group="holdout", at=world.at - timedelta(days=3))
    event = {"external_id": "H2", "type": "login", "occurred_at": _iso(world.at)}
    assert hooks.activity(event).json()["conversions"] == 1
    (conversion,) = _conversions(world.app)
    assert (conversion.enrollment_id, conversion.group, conversion.source) == (
        enrollment,
        "holdout",
        "webhook",
    )


def test_bad_events_are_listed_with_every_reason_and_the_good_ones_stored(
    hooks: Hooks, world: World
) -> None:
    world.participant(external_id="G1")
    now = world.at
    good = {"external_id": "G1", "type": "renewal", "occurred_at": _iso(now), "reference": "b-1"}
    batch: list[Any] = [
        good,
        "renewal",  # not an object
        {"type": "Not A Type", "occurred_at": "yesterday", "points": "1.5", "amount": "1.005"},
        {"external_id": "NOPE", "type": "login", "occurred_at": _iso(now)},
        {"external_id": "G1", "type": "login", "occurred_at": "2026-03-02", "program": "other"},
        {"external_id": "G1", "type": "login", "occurred_at": _iso(now), "reference": "a\u0000b"},
        {**good, "reference": "b-2", "occurred_at": _iso(now + timedelta(days=3))},
        {**good, "reference": "b-3", "points": 2**40},
    ]
    response = hooks.activity(batch)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["received"], body["accepted"], body["duplicates"]) == (8, 1, 0)
    rejected = {item["index"]: item["reasons"] for item in body["rejected"]}
    assert sorted(rejected) == [1, 2, 3, 4, 5, 6, 7]
    assert body["received"] == body["accepted"] + body["duplicates"] + len(rejected)
    assert rejected[1] == ["not a JSON object"]
    assert [reason.split(":")[0] for reason in rejected[2]] == [
        "external_id",
        "type",
        "occurred_at",
        "points",
        "amount",
    ]
    assert rejected[3] == ["no participant with external_id NOPE in program loyalty"]
    assert rejected[4] == ["program: no program 'other'"]
    assert rejected[5] == ["reference: contains a NUL character"]
    assert "is in the future" in rejected[6][0]
    assert rejected[7] == [f"points: {2**40} is too large"]
    assert [e.reference for e in _stored(world.app)] == ["b-1"]


def test_without_a_program_field_there_must_be_exactly_one_program(
    hooks: Hooks, world: World
) -> None:
    world.participant(external_id="M1")
    with world.app.sessions() as session, session.begin():
        make_program(session, at=world.at, key="travel", name="Travel Club")
    event = {"external_id": "M1", "type": "login", "occurred_at": _iso(world.at)}
    body = hooks.activity(event).json()
    assert body["rejected"] == [
        {"index": 0, "reasons": ["program: required (there is more than one program)"]}
    ]
    assert hooks.activity({**event, "program": "loyalty"}).json()["accepted"] == 1
    assert len(_stored(world.app)) == 1


def test_malformed_and_oversized_bodies(hooks: Hooks, world: World) -> None:
    world.participant(external_id="M1")
    for raw in (b"", b"{", b"\xff\xfe", b"[1, 2", b"NaN]"):
        response = hooks.activity(raw)
        assert response.status_code == 400, raw
        assert response.json() == {"error": "the body is not JSON"}
    for value in ("a string", 12, None, True):
        assert hooks.activity(value).status_code == 400
    event = {"external_id": "M1", "type": "login", "occurred_at": _iso(world.at)}
    too_many = [{**event, "reference": f"r{i}"} for i in range(MAX_EVENTS + 1)]
    response = hooks.activity(too_many)
    assert response.status_code == 413
    assert f"at most {MAX_EVENTS}" in response.json()["error"]
    assert hooks.activity(b"[" + b" " * (3 * 1024 * 1024) + b"]").status_code == 413
    assert _stored(world.app) == []
    # Exactly the most per request is fine.
    response = hooks.activity(too_many[:MAX_EVENTS])
    assert response.status_code == 200 and response.json()["accepted"] == MAX_EVENTS
    assert hooks.activity([]).json() == {
        "received": 0,
        "accepted": 0,
        "duplicates": 0,
        "rejected": [],
        "conversions": 0,
    }


# ---------------------------------------------------------------- fuzz

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Lone surrogates included: a JSON body may carry them as \\ud800 escapes.
any_text = st.text(max_size=200)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    any_text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
)
FIELDS = ("external_id", "type", "occurred_at", "points", "amount", "reference", "program")
field_values = st.one_of(
    scalars,
    st.sampled_from(["M1", "login", "renewal", "loyalty", "2026-03-01", "0001-01-01T00:00+05:00"]),
    st.datetimes().map(lambda d: d.isoformat()),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    json_values,
)
events = st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=len(FIELDS))


def _world_member(world: World) -> None:
    with world.app.sessions() as session:
        exists = session.scalar(
            select(func.count()).select_from(Participant).where(Participant.external_id == "M1")
        )
    if not exists:
        world.participant(external_id="M1")
        _enroll(world, world.participant(external_id="M2"), group="treatment", at=world.at)


@FUZZ
@given(batch=st.one_of(events, st.lists(st.one_of(events, json_values), max_size=8)))
def test_fuzzed_events_never_500(hooks: Hooks, world: World, batch: Any) -> None:
    _world_member(world)
    body = json.dumps(batch).encode()
    response = hooks.activity(body)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        receipt = response.json()
        assert receipt["received"] == (
            receipt["accepted"] + receipt["duplicates"] + len(receipt["rejected"])
        )
        assert all(item["reasons"] for item in receipt["rejected"])


@FUZZ
@given(body=st.one_of(st.binary(max_size=2000), json_values.map(lambda v: json.dumps(v).encode())))
def test_fuzzed_bodies_never_500(hooks: Hooks, world: World, body: bytes) -> None:
    _world_member(world)
    assert hooks.activity(body).status_code in (200, 400)
    assert hooks.activity(body, token="not-the-token-not-the-token").status_code == 403
