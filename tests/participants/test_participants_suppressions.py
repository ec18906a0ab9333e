"""Suppressions and the participant read side (show/list)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from engine.app import App
from engine.clock import FrozenClock
from engine.consent.suppressions import (
    add_suppression,
    is_suppressed,
    list_suppressions,
    normalise_address,
    remove_suppression,
)
from engine.errors import InputError, NotFoundError
from engine.participants.queries import list_participants, show_participant
from engine.testing.fakes import make_consent, make_event, make_participant, make_program


def test_normalise_address() -> None:
    assert normalise_address(" Ana.Perez@Example.COM ") == "ana.perez@example.com"
    assert normalise_address("(202) 555-0143") == "+12025550143"
    assert normalise_address("020 7946 0958", default_region="GB") == "+442079460958"
    with pytest.raises(InputError, match="not an email address or phone number"):
        normalise_address("hello")


def test_add_list_check_remove(app: App, clock: FrozenClock) -> None:
    at = clock.now()
    with app.sessions() as session, session.begin():
        entry = add_suppression(
            session, "Ana@Example.com", channel="email", reason="opt_out", source="test", at=at
        )
        assert entry.address == "ana@example.com"
        assert entry.address_hash == hashlib.sha256(b"ana@example.com").hexdigest()
        add_suppression(
            session,
            "202-555-0143",
            channel="all",
            reason="do_not_call",
            source="test",
            note="asked on a call",
            at=at + timedelta(minutes=1),
        )
    with app.sessions() as session, session.begin():
        assert is_suppressed(session, "ANA@example.com", channel="email")
        assert not is_suppressed(session, "bo@example.com", channel="email")
        assert is_suppressed(session, "+12025550143", channel="sms")  # via "all"
        assert [s.channel for s in list_suppressions(session)] == ["all", "email"]
        assert [s.channel for s in list_suppressions(session, channel="email")] == ["email"]
        removed = remove_suppression(session, "ana@example.com", channel="email")
        assert removed.reason == "opt_out"
        assert not is_suppressed(session, "ana@example.com", channel="email")
        with pytest.raises(NotFoundError):
            remove_suppression(session, "ana@example.com", channel="email")


def test_erasure_keeps_only_the_hash_and_cannot_be_removed(app: App, clock: FrozenClock) -> None:
    at = clock.now()
    with app.sessions() as session, session.begin():
        add_suppression(
            session, "gone@example.com", channel="email", reason="opt_out", source="test", at=at
        )
        entry = add_suppression(
            session, "gone@example.com", channel="email", reason="erasure", source="test", at=at
        )
        assert entry.address is None and entry.reason == "erasure"
        # An erasure is never weakened by a later, milder entry.
        again = add_suppression(
            session, "gone@example.com", channel="email", reason="bounce", source="test", at=at
        )
        assert again.reason == "erasure" and again.address is None
    with app.sessions() as session, session.begin():
        with pytest.raises(InputError, match="cannot be removed"):
            remove_suppression(session, "gone@example.com", channel="email")
        assert is_suppressed(session, "gone@example.com", channel="email")


@pytest.mark.parametrize(
    ("address", "channel", "reason", "message"),
    [
        ("a@example.com", "sms", "opt_out", "cannot be suppressed on sms"),
        ("+12025550143", "email", "opt_out", "cannot be suppressed on email"),
        ("a@example.com", "fax", "opt_out", "channel 'fax'"),
        ("a@example.com", "email", "because", "reason 'because'"),
    ],
)
def test_bad_suppressions_are_refused(
    app: App, clock: FrozenClock, address: str, channel: str, reason: str, message: str
) -> None:
    with app.sessions() as session, pytest.raises(InputError, match=message):
        add_suppression(
            session, address, channel=channel, reason=reason, source="t", at=clock.now()
        )


def test_show_and_list_participants(app: App, clock: FrozenClock) -> None:
    at = clock.now()
    with app.sessions() as session, session.begin():
        program = make_program(session, at=at)
        ana = make_participant(
            session,
            program,
            at=at,
            external_id="A1",
            first_name="Ana",
            email="Ana@example.com",
            phone="+12025550143",
            tier="gold",
            locale="es-MX",
            status="active",
        )
        make_participant(
            session,
            program,
            at=at,
            external_id="B2",
            first_name="Bo",
            locale="es",
            status="lapsed",
            tier="gold",
        )
        make_participant(
            session, program, at=at, external_id="C3", first_name="Cy", locale="en", status="active"
        )
        make_consent(session, ana, channel="sms", status="opted_out", at=at)
        for day in range(25):
            make_event(session, ana, type="login", occurred_at=at - timedelta(days=day))
        add_suppression(
            session, "ana@example.com", channel="email", reason="bounce", source="test", at=at
        )
    with app.sessions() as session:
        view = show_participant(session, None, "A1")
        assert view["program"] == "loyalty" and view["tier"] == "gold"
        assert view["consents"][0]["status"] == "opted_out"
        assert [s["reason"] for s in view["suppressions"]] == ["bounce"]
        assert len(view["recent_events"]) == 20
        assert view["recent_events"][0]["occurred_at"] == at
        with pytest.raises(NotFoundError):
            show_participant(session, "loyalty", "ZZ")

        def ids(**filters: object) -> list[str]:
            return [r["external_id"] for r in list_participants(session, None, **filters)]

        assert ids() == ["A1", "B2", "C3"]
        assert ids(status="active") == ["A1", "C3"]
        assert ids(tier="gold", status="lapsed") == ["B2"]
        assert ids(locale="es") == ["A1", "B2"]
        assert ids(search="ANA") == ["A1"]
        assert ids(search="555-0143") == ["A1"]
        assert ids(limit=1, offset=1) == ["B2"]
