"""POST /webhooks/sendgrid: signed Event Webhook batches, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from webhook_helpers import Hooks, World

from engine.app import App
from engine.clock import FrozenClock
from engine.db.models import Contact, OutboxMessage, Participant
from engine.errors import ConfigError
from engine.webhooks.app import build_asgi_app

_ids = itertools.count(1)


def event(
    kind: str,
    message: OutboxMessage | None,
    participant: Participant | None = None,
    *,
    at: int = 1772463600,  # 2026-03-02 15:00 UTC, the test clock
    **extra: Any,
) -> dict[str, Any]:
    """An event as SendGrid sends it: our custom arg (message_id) rides as a top-level key."""
    body: dict[str, Any] = {
        "event": kind,
        "sg_event_id": f"evt-{next(_ids)}-{kind}",
        "timestamp": at,
        "email": (message.to_address if message else None)
        or (participant.email if participant else "nobody@example.com"),
    }
    if message is not None:
        body["message_id"] = message.uid
        body["sg_message_id"] = f"{message.provider_message_id}.filterdrecv-1-2-3"
    body.update(extra)
    return body


def test_valid_batch_moves_messages_forward(world: World, hooks: Hooks) -> None:
    member = world.participant()
    sent = world.message(member, provider_message_id="abcDEF1234567890abcDE1")
    response = hooks.sendgrid(
        [event("processed", sent), event("delivered", sent), event("open", sent)]
    )
    assert response.status_code == 200, response.text
    assert response.json()["applied"] == 3, response.json()
    row = world.outbox(sent)
    assert row.status == "delivered"
    assert row.delivered_at == world.at and row.opened_at == world.at
    assert [e.event for e in world.events()] == ["processed", "delivered", "open"]
    assert all(e.outbox_id == sent.id and e.participant_id == member.id for e in world.events())


def test_out_of_order_events_only_move_forward(world: World, hooks: Hooks) -> None:
    member = world.participant()
    message = world.message(member, provider_message_id="x" * 22)
    hooks.sendgrid([event("bounce", message, type="bounce", reason="550 5.1.1 no such user")])
    # A 'delivered' and a 'processed' that arrive after the bounce change nothing.
    hooks.sendgrid([event("delivered", message), event("processed", message)])
    row = world.outbox(message)
    assert row.status == "bounced"
    assert row.status_reason == "bounce: 550 5.1.1 no such user"
    assert ("email", member.email.lower(), "bounce", "sendgrid_bounce") in world.suppressions()


def test_replayed_batch_changes_nothing(world: World, hooks: Hooks) -> None:
    member = world.participant()
    message = world.message(member, provider_message_id="y" * 22)
    batch = [event("delivered", message), event("click", message, url="https://x.example")]
    first = hooks.sendgrid(batch)
    assert first.json()["applied"] == 2
    before = (world.outbox(message), world.events(), world.suppressions())
    again = hooks.sendgrid(batch)
    assert again.status_code == 200
    assert again.json()["applied"] == 0 and again.json()["duplicates"] == 2
    after = (world.outbox(message), world.events(), world.suppressions())
    assert [e.id for e in after[1]] == [e.id for e in before[1]]
    assert after[0].updated_at == before[0].updated_at and after[0].status == "delivered"
    assert after[0].clicked_at == world.at


def test_duplicate_inside_one_batch_is_applied_once(world: World, hooks: Hooks) -> None:
    member = world.participant()
    message = world.message(member, provider_message_id="d" * 22)
    once = event("delivered", message)
    response = hooks.sendgrid([once, dict(once)])
    assert response.json()["applied"] == 1 and response.json()["duplicates"] == 1


def test_unknown_message_is_settled_as_sent_by_processed(world: World, hooks: Hooks) -> None:
    member = world.participant()
    lost = world.message(member, status="unknown")  # the crash window: no provider id known
    hooks.sendgrid([event("processed", lost, sg_message_id="NEWID1234567890abcdefg.filter")])
    row = world.outbox(lost)
    assert row.status == "sent"
    assert row.provider_message_id == "NEWID1234567890abcdefg"
    assert row.sent_at == world.at


def test_unknown_message_settled_by_events_becomes_one_contact(
    world: World, hooks: Hooks, clock: FrozenClock
) -> None:
    """While unknown it counted toward the frequency cap from when it went (here its row's
    updated_at, world.at); settled, it is one row of the contacts ledger at that instant, not
    at the event's arrival, and the events after it add none."""
    member = world.participant()
    lost = world.message(member, status="unknown")
    clock.advance(timedelta(hours=1))
    first = event("processed", lost, sg_message_id="NEWID1234567890abcdefg.filter")
    hooks.sendgrid([first])
    hooks.sendgrid([first, event("delivered", lost, sg_message_id=first["sg_message_id"])])
    assert world.outbox(lost).status == "delivered"
    with world.app.sessions() as session:
        contacts = session.execute(
            select(Contact.participant_id, Contact.channel, Contact.run_id, Contact.occurred_at)
        ).all()
    assert contacts == [(member.id, "email", world.run_id, world.at)]


def test_event_found_by_sg_message_id_and_recipient(world: World, hooks: Hooks) -> None:
    # One request to SendGrid, two recipients: one X-Message-Id, told apart by address.
    first, second = world.participant(), world.participant()
    a = world.message(first, provider_message_id="batch1234567890batch12")
    b = world.message(second, provider_message_id="batch1234567890batch12")
    payload = event("delivered", b)
    del payload["message_id"]
    hooks.sendgrid([payload])
    assert world.outbox(a).status == "sent"
    assert world.outbox(b).status == "delivered"


def test_unknown_message_id_is_recorded_and_changes_no_message(world: World, hooks: Hooks) -> None:
    member = world.participant()
    ours = world.message(member, provider_message_id="z" * 22)
    stranger = {
        "event": "delivered",
        "sg_event_id": "evt-stranger",
        "timestamp": 1772463600,
        "email": "someone@elsewhere.example",
        "message_id": "f" * 32,
        "sg_message_id": "notours.filter",
    }
    response = hooks.sendgrid([stranger])
    assert response.status_code == 200
    assert response.json()["unmatched"] == 1
    assert world.outbox(ours).status == "sent"
    (recorded,) = world.events()
    assert recorded.outbox_id is None and recorded.participant_id is None


def test_soft_block_is_recorded_only(world: World, hooks: Hooks) -> None:
    member = world.participant()
    message = world.message(member, provider_message_id="b" * 22)
    hooks.sendgrid([event("bounce", message, type="blocked", reason="IP reputation")])
    hooks.sendgrid([event("deferred", message, attempt="2")])
    assert world.outbox(message).status == "sent"
    assert world.suppressions() == []
    assert [e.event for e in world.events()] == ["bounce", "deferred"]


def test_dropped_fails_the_message(world: World, hooks: Hooks) -> None:
    member = world.participant()
    message = world.message(member, provider_message_id="c" * 22)
    hooks.sendgrid([event("dropped", message, reason="Unsubscribed Address")])
    row = world.outbox(message)
    assert row.status == "failed" and row.status_reason == "dropped: Unsubscribed Address"
    assert ("email", member.email.lower(), "opt_out", "sendgrid_dropped") in world.suppressions()


def test_unsubscribe_and_spamreport_suppress_and_skip_queued_mail(
    world: World, hooks: Hooks
) -> None:
    leaving, annoyed = world.participant(), world.participant()
    sent_a = world.message(leaving, provider_message_id="e" * 22)
    sent_b = world.message(annoyed, provider_message_id="g" * 22)
    other_run = world.run("second-campaign")
    queued_a = world.message(leaving, status="queued", run_id=other_run)
    queued_sms = world.message(leaving, status="queued", channel="sms", run_id=other_run)
    queued_b = world.message(annoyed, status="queued", run_id=other_run)
    response = hooks.sendgrid(
        [event("group_unsubscribe", sent_a, asm_group_id=42), event("spamreport", sent_b)]
    )
    assert response.json()["suppressions"] == 2
    entries = world.suppressions()
    assert ("email", leaving.email.lower(), "opt_out", "sendgrid_group_unsubscribe") in entries
    assert ("email", annoyed.email.lower(), "spam_report", "sendgrid_spamreport") in entries
    assert world.outbox(queued_a).status == "skipped"
    assert world.outbox(queued_a).status_reason == "suppressed"
    assert world.outbox(queued_b).status == "skipped"
    assert world.outbox(queued_sms).status == "queued"  # email opt-out leaves SMS alone


def test_open_before_delivered_still_counts_as_delivered(world: World, hooks: Hooks) -> None:
    member = world.participant()
    message = world.message(member, provider_message_id="o" * 22)
    hooks.sendgrid([event("open", message, at=1772463660)])
    hooks.sendgrid([event("open", message, at=1772463600)])  # an earlier open, reported later
    row = world.outbox(message)
    assert row.status == "delivered"
    assert row.opened_at == world.at  # the earliest


def test_altered_body_is_refused(world: World, hooks: Hooks) -> None:
    member = world.participant()
    message = world.message(member, provider_message_id="h" * 22)
    body = json.dumps([event("delivered", message)]).encode()
    headers = hooks.keys.sign(body, hooks.now_stamp())
    tampered = body.replace(b"delivered", b"bounce\x20\x20\x20")
    response = hooks.client.post("/webhooks/sendgrid", content=tampered, headers=headers)
    assert response.status_code == 403
    assert world.outbox(message).status == "sent" and world.events() == []


def test_reserialised_json_is_refused(world: World, hooks: Hooks) -> None:
    # The signature covers the raw bytes: the same events with other spacing do not verify.
    member = world.participant()
    message = world.message(member, provider_message_id="i" * 22)
    events = [event("delivered", message)]
    signed = json.dumps(events, separators=(",", ":")).encode()
    headers = hooks.keys.sign(signed, hooks.now_stamp())
    response = hooks.client.post(
        "/webhooks/sendgrid", content=json.dumps(events, indent=1).encode(), headers=headers
    )
    assert response.status_code == 403
    assert world.events() == []


def test_stale_or_future_timestamp_is_refused(
    world: World, hooks: Hooks, clock: FrozenClock
) -> None:
    member = world.participant()
    message = world.message(member, provider_message_id="j" * 22)
    now = int(clock.now().timestamp())
    for stamp in (now - 301, now + 301):
        response = hooks.sendgrid([event("delivered", message)], timestamp=str(stamp))
        assert response.status_code == 403
    assert (
        hooks.sendgrid([event("delivered", message)], timestamp=str(now - 299)).status_code == 200
    )


def test_captured_request_replayed_later_is_refused(
    world: World, hooks: Hooks, clock: FrozenClock
) -> None:
    member = world.participant()
    message = world.message(member, provider_message_id="k" * 22)
    body = json.dumps([event("delivered", message)]).encode()
    headers = hooks.keys.sign(body, hooks.now_stamp())
    assert hooks.client.post("/webhooks/sendgrid", content=body, headers=headers).status_code == 200
    clock.advance(timedelta(minutes=6))
    replay = hooks.client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert replay.status_code == 403


def test_missing_or_garbage_signature_is_refused(world: World, hooks: Hooks) -> None:
    body = b"[]"
    stamp = hooks.now_stamp()
    sig, ts = "X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp"
    cases: list[dict[str, str]] = [
        {},
        {ts: stamp},
        {sig: "not base64!", ts: stamp},
        {sig: "AAAA", ts: stamp},
        {**hooks.keys.sign(body, stamp), ts: "yesterday"},
        {**hooks.keys.sign(body, stamp), ts: "-" + stamp},
    ]
    for headers in cases:
        response = hooks.client.post("/webhooks/sendgrid", content=body, headers=headers)
        assert response.status_code == 403, headers
    assert world.events() == []


def test_signed_but_malformed_body_is_a_400(world: World, hooks: Hooks) -> None:
    for body in (b"{not json", b'{"event": "delivered"}', b"\xff\xfe", b'"just a string"'):
        response = hooks.sendgrid(body)
        assert response.status_code in (400, 403), body
    assert hooks.sendgrid(b"{not json").status_code == 400
    assert hooks.sendgrid(b'{"event": "delivered"}').status_code == 400


def test_events_that_are_not_events_are_ignored(world: World, hooks: Hooks) -> None:
    response = hooks.sendgrid(
        [1, "x", None, [], {}, {"event": 5}, {"event": "delivered", "timestamp": "soon"}]  # type: ignore[list-item]
    )
    assert response.status_code == 200
    assert response.json()["ignored"] == 6 and response.json()["applied"] == 1


def test_no_public_key_configured_refuses_everything(hooks: Hooks, wapp: App) -> None:
    bare = App(
        settings=wapp.settings.model_copy(update={"sendgrid_webhook_public_key": None}),
        engine=wapp.engine,
        sessions=wapp.sessions,
        clock=wapp.clock,
    )
    body = b"[]"
    with TestClient(build_asgi_app(bare)) as client:
        headers = hooks.keys.sign(body, hooks.now_stamp())
        response = client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code == 403
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY" in response.json()["error"]


def test_a_malformed_public_key_is_a_config_error(wapp: App) -> None:
    broken = App(
        settings=wapp.settings.model_copy(update={"sendgrid_webhook_public_key": "not-a-key"}),
        engine=wapp.engine,
        sessions=wapp.sessions,
        clock=wapp.clock,
    )
    with pytest.raises(ConfigError, match="SENDGRID_WEBHOOK_PUBLIC_KEY"):
        build_asgi_app(broken)
