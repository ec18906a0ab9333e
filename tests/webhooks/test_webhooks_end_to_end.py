"""End to end with the real dispatcher: an opt-out that arrives after launch wins over every
message still waiting, on every campaign; a GET of the unsubscribe link never unsubscribes."""

from __future__ import annotations

from urllib.parse import urlsplit

from webhook_helpers import Hooks, World

from engine.channels.base import OutboundSms
from engine.consent.unsubscribe import signer_for
from engine.db.models import OutboxMessage, Participant
from engine.sending.dispatch import dispatch
from engine.testing.fakes import FrozenClock, RecordingChannel, make_consent


def _channels(clock: FrozenClock) -> dict[str, RecordingChannel]:
    return {
        "email": RecordingChannel("email", clock=clock),
        "sms": RecordingChannel("sms", clock=clock),
    }


def _member(world: World) -> Participant:
    member = world.participant(timezone="America/New_York")  # 10:00 there: inside the window
    with world.app.sessions() as session, session.begin():
        for channel in ("email", "sms"):
            make_consent(session, member, channel=channel, status="opted_in", at=world.at)
    return member


def _queue(world: World, member: Participant, channel: str, step: str, run: int) -> OutboxMessage:
    return world.message(member, channel=channel, status="queued", step_id=step, run_id=run)


def test_stop_after_launch_stops_every_sms_of_every_campaign(
    world: World, hooks: Hooks, clock: FrozenClock
) -> None:
    member, bystander = _member(world), _member(world)
    renewal = world.run("renewal")
    first = _queue(world, member, "sms", "sms-1", world.run_id)
    channels = _channels(clock)
    assert dispatch(world.app, channels, worker="w").sent == 1

    # The dispatcher gave Twilio our status callback URL: Twilio signs exactly that URL.
    (sent,) = channels["sms"].sent
    assert isinstance(sent, OutboundSms) and sent.status_callback
    callback = urlsplit(sent.status_callback)
    form = {"MessageSid": "SM" + "5" * 32, "MessageStatus": "delivered", "To": member.phone or ""}
    response = hooks.twilio(callback.path, form, query=callback.query)
    assert response.status_code == 200
    assert world.outbox(first).status == "delivered"

    # Launch has queued more texts for this member in both campaigns, and one for someone else.
    waiting = [
        _queue(world, member, "sms", "sms-2", world.run_id),
        _queue(world, member, "sms", "sms-1", renewal),
    ]
    email = _queue(world, member, "email", "email-1", renewal)
    other = _queue(world, bystander, "sms", "sms-1", renewal)

    reply = hooks.inbound(
        {"MessageSid": "SM" + "6" * 32, "From": member.phone or "", "Body": "stop"}
    )
    assert "unsubscribed" in reply.text
    assert {world.outbox(m).status for m in waiting} == {"skipped"}

    # A text the sequencer makes after the STOP is stopped by the send-time gate.
    later = _queue(world, member, "sms", "sms-1", world.run("points-expiry"))
    summary = dispatch(world.app, channels, worker="w")
    sent_ids = channels["sms"].sent_ids
    assert sent_ids == [first.uid, other.uid]
    assert world.outbox(later).status == "skipped"
    assert world.outbox(email).status == "sent"  # an SMS opt-out leaves email alone
    assert summary.sent == 2


def test_one_click_unsubscribe_stops_the_next_email(
    world: World, hooks: Hooks, clock: FrozenClock
) -> None:
    member = _member(world)
    channels = _channels(clock)
    _queue(world, member, "email", "email-1", world.run_id)
    assert dispatch(world.app, channels, worker="w").sent == 1
    with world.app.sessions() as session, session.begin():
        token = signer_for(session, world.app.settings).sign(member.id, "email")
    response = hooks.client.post(
        f"/u/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    following = _queue(world, member, "email", "email-2", world.run_id)
    dispatch(world.app, channels, worker="w")
    assert len(channels["email"].sent) == 1
    assert world.outbox(following).status == "skipped"


def test_a_get_of_the_link_never_unsubscribes(
    world: World, hooks: Hooks, clock: FrozenClock
) -> None:
    member = _member(world)
    channels = _channels(clock)
    with world.app.sessions() as session, session.begin():
        token = signer_for(session, world.app.settings).sign(member.id, "email")
    assert hooks.client.get(f"/u/{token}").status_code == 200
    message = _queue(world, member, "email", "email-1", world.run_id)
    assert dispatch(world.app, channels, worker="w").sent == 1
    assert world.outbox(message).status == "sent"
    assert world.suppressions() == []
