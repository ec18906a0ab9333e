"""Twilio status callbacks and inbound SMS, signed with the official RequestValidator."""

from __future__ import annotations

import itertools
from typing import Any

from webhook_helpers import INBOUND_PATH, PUBLIC_URL, STATUS_PATH, Hooks, World, twilio_signature

from engine.db.models import OutboxMessage, Participant
from engine.webhooks.inbound_sms import keyword

_sids = itertools.count(1)


def status_form(message: OutboxMessage, status: str, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": message.provider_message_id or "SM" + "0" * 32,
        "MessageStatus": status,
        "AccountSid": "AC" + "1" * 32,
        "To": message.to_address or "",
        "From": "+15005550006",
        **extra,
    }


def inbound_form(member: Participant, body: str, sid: str | None = None) -> dict[str, str]:
    return {
        "MessageSid": sid or f"SM{next(_sids):032x}",
        "AccountSid": "AC" + "1" * 32,
        "From": member.phone or "",
        "To": "+15005550006",
        "Body": body,
        "NumMedia": "0",
    }


def body_of(response: Any) -> str:
    return str(response.text)


# ---------------------------------------------------------------- status callbacks


def test_status_callbacks_move_the_message_forward(world: World, hooks: Hooks) -> None:
    member = world.participant()
    message = world.message(member, channel="sms", provider_message_id="SM" + "a" * 32)
    for status in ("queued", "sent", "delivered", "sent"):
        response = hooks.status(message.uid, status_form(message, status))
        assert response.status_code == 200, response.text
    row = world.outbox(message)
    assert row.status == "delivered" and row.delivered_at == world.at
    assert [e.event for e in world.events()] == ["queued", "sent", "delivered"]  # one 'sent'


def test_undelivered_fails_with_the_error_code(world: World, hooks: Hooks) -> None:
    member = world.participant()
    message = world.message(member, channel="sms", provider_message_id="SM" + "b" * 32)
    hooks.status(message.uid, status_form(message, "undelivered", ErrorCode="30003"))
    row = world.outbox(message)
    assert row.status == "failed"
    assert row.status_reason == "twilio undelivered (error 30003)"
    assert world.suppressions() == []


def test_error_21610_suppresses_sms_and_skips_queued_texts(world: World, hooks: Hooks) -> None:
    member = world.participant()
    message = world.message(member, channel="sms", provider_message_id="SM" + "c" * 32)
    waiting = world.message(member, channel="sms", status="queued", run_id=world.run("other"))
    hooks.status(message.uid, status_form(message, "failed", ErrorCode="21610"))
    assert world.outbox(message).status == "failed"
    assert ("sms", member.phone, "opt_out", "twilio_21610") in world.suppressions()
    assert world.outbox(waiting).status == "skipped"


def test_callback_settles_an_unknown_message(world: World, hooks: Hooks) -> None:
    member = world.participant()
    lost = world.message(member, channel="sms", status="unknown")
    form = status_form(lost, "sent", MessageSid="SM" + "d" * 32)
    hooks.status(lost.uid, form)
    row = world.outbox(lost)
    assert row.status == "sent" and row.provider_message_id == "SM" + "d" * 32


def test_callback_without_our_id_finds_the_message_by_sid(world: World, hooks: Hooks) -> None:
    member = world.participant()
    message = world.message(member, channel="sms", provider_message_id="SM" + "e" * 32)
    assert hooks.status(None, status_form(message, "delivered")).status_code == 200
    assert world.outbox(message).status == "delivered"


def test_unknown_message_id_changes_nothing(world: World, hooks: Hooks) -> None:
    member = world.participant()
    message = world.message(member, channel="sms", provider_message_id="SM" + "f" * 32)
    form = status_form(message, "failed", MessageSid="SM" + "9" * 32, ErrorCode="30001")
    response = hooks.status("0" * 32, form)
    assert response.status_code == 200 and response.json()["matched"] is False
    assert world.outbox(message).status == "sent"


def test_wrong_url_is_refused_http_vs_https_behind_a_proxy(world: World, hooks: Hooks) -> None:
    member = world.participant()
    message = world.message(member, channel="sms", provider_message_id="SM" + "1" * 32)
    form = status_form(message, "delivered")
    query = f"m={message.uid}"
    # What this process sees behind the TLS proxy is http://testserver/...; Twilio signed the
    # public https URL. Signing the internal URL (or http) must fail, the public one pass.
    for wrong in (
        f"http://testserver{STATUS_PATH}?{query}",
        f"{PUBLIC_URL.replace('https', 'http')}{STATUS_PATH}?{query}",
        f"{PUBLIC_URL}{STATUS_PATH}?m=someone-else",
        f"{PUBLIC_URL}{INBOUND_PATH}?{query}",
    ):
        response = hooks.twilio(STATUS_PATH, form, query=query, signed_url=wrong)
        assert response.status_code == 403, wrong
    assert world.outbox(message).status == "sent"
    assert hooks.twilio(STATUS_PATH, form, query=query).status_code == 200
    assert world.outbox(message).status == "delivered"


def test_altered_params_or_token_are_refused(world: World, hooks: Hooks) -> None:
    member = world.participant()
    message = world.message(member, channel="sms", provider_message_id="SM" + "2" * 32)
    form = status_form(message, "delivered")
    url = f"{PUBLIC_URL}{STATUS_PATH}?m={message.uid}"
    signature = twilio_signature(url, form)
    altered = {**form, "MessageStatus": "failed"}
    response = hooks.client.post(
        f"{STATUS_PATH}?m={message.uid}", data=altered, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 403
    other_token = twilio_signature(url, form, token="f" * 32)
    response = hooks.client.post(
        f"{STATUS_PATH}?m={message.uid}", data=form, headers={"X-Twilio-Signature": other_token}
    )
    assert response.status_code == 403
    no_header = hooks.client.post(f"{STATUS_PATH}?m={message.uid}", data=form)
    assert no_header.status_code == 403
    assert world.outbox(message).status == "sent" and world.events() == []


def test_signed_but_incomplete_callback_is_a_400(world: World, hooks: Hooks) -> None:
    response = hooks.status("abc", {"AccountSid": "AC" + "1" * 32})
    assert response.status_code == 400
    assert "MessageSid" in response.json()["error"]


def test_malformed_form_body_is_a_400(hooks: Hooks) -> None:
    response = hooks.client.post(
        STATUS_PATH,
        content=b"\xff\xfe=\x00",
        headers={"X-Twilio-Signature": "x", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400


# ---------------------------------------------------------------- inbound SMS


def test_keywords() -> None:
    for text in ("STOP", "stop", "  Stop  ", "stopall", "Unsubscribe", "cancel", "END", "quit!"):
        assert keyword(text) == "stop", text
    for text in ("START", "yes", "Unstop"):
        assert keyword(text) == "start", text
    assert keyword("help") == "help" and keyword(" INFO ") == "help"
    for text in ("please stop", "stop it", "", "STOPP", "what is my balance?"):
        assert keyword(text) is None, text


def test_stop_suppresses_once_and_confirms_once(world: World, hooks: Hooks) -> None:
    member = world.participant()
    first = hooks.inbound(inbound_form(member, " Stop "))
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("application/xml")
    assert "<Message>" in body_of(first) and "unsubscribed" in body_of(first)
    assert ("sms", member.phone, "opt_out", "sms_stop") in world.suppressions()
    # A second STOP (a new message) and a retried webhook (the same MessageSid): no reply.
    again = hooks.inbound(inbound_form(member, "STOP"))
    form = inbound_form(member, "stop")
    hooks.inbound(form)
    retried = hooks.inbound(form)
    for response in (again, retried):
        assert response.status_code == 200 and "<Message>" not in body_of(response)
    assert len([s for s in world.suppressions() if s[0] == "sms"]) == 1


def test_stop_reply_is_in_the_participants_language(world: World, hooks: Hooks) -> None:
    member = world.participant(locale="es-MX")
    response = hooks.inbound(inbound_form(member, "PARAR"))
    assert "<Message>" not in body_of(response)  # not a keyword: a reply for an agent
    response = hooks.inbound(inbound_form(member, "stop"))
    assert "se ha dado de baja" in body_of(response)


def test_start_lifts_only_the_opt_out(world: World, hooks: Hooks) -> None:
    member = world.participant()
    hooks.inbound(inbound_form(member, "STOP"))
    response = hooks.inbound(inbound_form(member, "start"))
    assert "resubscribed" in body_of(response)
    assert [s for s in world.suppressions() if s[0] == "sms"] == []
    # An erasure (or any reason but opt_out) is never lifted by a text message.
    with world.app.sessions() as session, session.begin():
        from engine.consent.suppressions import add_suppression

        add_suppression(session, member.phone or "", "sms", "manual", "cli", at=world.at)
    hooks.inbound(inbound_form(member, "UNSTOP"))
    assert ("sms", member.phone, "manual", "cli") in world.suppressions()


def test_help_answers_with_the_program_help_text(world: World, hooks: Hooks) -> None:
    member = world.participant()
    default = hooks.inbound(inbound_form(member, "help"))
    assert "Loyalty Rewards: reply STOP to unsubscribe" in body_of(default)
    with world.app.sessions() as session, session.begin():
        from engine.db.models import Program

        program = session.get(Program, world.program_id)
        assert program is not None
        program.help_text = "Loyalty Rewards help: call 1-800-555-0100 <9am-5pm>"
    response = hooks.inbound(inbound_form(member, "INFO"))
    assert "call 1-800-555-0100 &lt;9am-5pm&gt;" in body_of(response)
    assert world.suppressions() == []


def test_other_text_becomes_a_follow_up_task(world: World, hooks: Hooks) -> None:
    member = world.participant()
    message = world.message(member, channel="sms", provider_message_id="SM" + "3" * 32)
    response = hooks.inbound(inbound_form(member, "Can I still redeem my points?"))
    assert response.status_code == 200 and "<Message>" not in body_of(response)
    (reply,) = world.events()
    assert reply.event == "reply" and reply.participant_id == member.id
    assert reply.outbox_id == message.id
    assert reply.detail["body"] == "Can I still redeem my points?"
    (task,) = world.tasks()
    assert (task.kind, task.status, task.participant_id) == ("follow_up", "open", member.id)
    assert task.due_at == world.at and task.run_id == world.run_id
    assert world.suppressions() == []


def test_text_from_an_unknown_number_is_recorded_only(world: World, hooks: Hooks) -> None:
    form = {"MessageSid": "SM" + "4" * 32, "From": "+12025550199", "Body": "hello?"}
    assert hooks.inbound(form).status_code == 200
    (reply,) = world.events()
    assert reply.participant_id is None
    assert world.tasks() == []


def test_inbound_signature_is_checked(world: World, hooks: Hooks) -> None:
    member = world.participant()
    form = inbound_form(member, "STOP")
    bad = twilio_signature(f"http://testserver{INBOUND_PATH}", form)
    response = hooks.client.post(INBOUND_PATH, data=form, headers={"X-Twilio-Signature": bad})
    assert response.status_code == 403
    assert world.suppressions() == []


def test_further_replies_join_the_open_follow_up(world: World, hooks: Hooks) -> None:
    member = world.participant()
    hooks.inbound(inbound_form(member, "Hi, question about my renewal"))
    hooks.inbound(inbound_form(member, "Also: can I change my address?"))
    assert [e.event for e in world.events()] == ["reply", "reply"]
    (task,) = world.tasks()
    with world.app.sessions() as session, session.begin():
        from engine.db.models import CallTask

        closed = session.get(CallTask, task.id)
        assert closed is not None
        closed.status = "closed"
    hooks.inbound(inbound_form(member, "Hello again, weeks later"))
    assert len(world.tasks()) == 2


def test_start_from_a_number_that_never_stopped_says_so(world: World, hooks: Hooks) -> None:
    member = world.participant()
    response = hooks.inbound(inbound_form(member, "START"))
    assert "already subscribed" in body_of(response) and "resubscribed" not in body_of(response)
    # A number blocked for another reason is not told it is subscribed, nor resubscribed.
    with world.app.sessions() as session, session.begin():
        from engine.consent.suppressions import add_suppression

        add_suppression(session, member.phone or "", "sms", "manual", "cli", at=world.at)
    response = hooks.inbound(inbound_form(member, "START"))
    text = body_of(response)
    assert "subscribed" not in text.replace("unsubscribe", "") and "reply STOP" in text


def test_ten_stops_at_once_get_exactly_one_confirmation(world: World, wapp: Any) -> None:
    """Ten STOPs from one number, each in its own request and transaction, at the same moment
    (PostgreSQL runs them truly at once): one suppression and one confirmation, always."""
    import threading

    from engine.webhooks.app import WebhookApp
    from engine.webhooks.inbound_sms import handle_inbound

    member = world.participant()
    state = WebhookApp(wapp)
    barrier = threading.Barrier(10)
    replies: list[str | None] = []
    errors: list[BaseException] = []

    def stop() -> None:
        form = inbound_form(member, "STOP")
        try:
            barrier.wait(timeout=30)
            result = state.transaction(lambda s: handle_inbound(s, form, at=world.at))
            replies.append(result.reply)
        except BaseException as exc:
            errors.append(exc)

    for _ in range(3):  # a race lost once in four runs before: try it a few times
        replies.clear()
        with world.app.sessions() as session, session.begin():
            from engine.consent.opt_outs import lift_opt_out

            lift_opt_out(session, member.phone or "", "sms")
        threads = [threading.Thread(target=stop) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert len(replies) == 10
        assert len([r for r in replies if r]) == 1, replies
