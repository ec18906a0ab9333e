"""Hypothesis against every endpoint: whatever arrives, signed or not, the answer is never a 5xx.

The signed cases matter most: they get past the signature check and reach the code that
parses events and writes rows (NUL characters, huge numbers, wrong types, absurd timestamps,
over-long ids), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webhook_helpers import INBOUND_PATH, STATUS_PATH, Hooks, World

from engine.consent.unsubscribe import signer_for

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4)
)
EVENT_NAMES = (
    "processed",
    "delivered",
    "deferred",
    "bounce",
    "dropped",
    "open",
    "click",
    "unsubscribe",
    "group_unsubscribe",
    "spamreport",
    "group_resubscribe",
)


def _header(value: str) -> bytes:
    """Any text as raw header bytes (what a client may send), less what HTTP cannot carry."""
    return value.encode("utf-8").translate(None, b"\r\n\x00")


def _world_messages(world: World) -> tuple[list[str], list[str]]:
    member = world.participant()
    email = world.message(member, provider_message_id="fuzz0123456789fuzz0123")
    unknown = world.message(member, status="unknown", step_id="email-2")
    sms = world.message(member, channel="sms", provider_message_id="SM" + "7" * 32)
    return [email.uid, unknown.uid, sms.uid], [member.email or "", member.phone or ""]


@FUZZ
@given(body=st.binary(max_size=2000), signature=text, stamp=text)
def test_unsigned_sendgrid_garbage_is_refused(
    hooks: Hooks, body: bytes, signature: str, stamp: str
) -> None:
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": _header(signature),
        "X-Twilio-Email-Event-Webhook-Timestamp": _header(stamp),
    }
    response = hooks.client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code == 403


@FUZZ
@given(payload=json_values)
def test_signed_arbitrary_json_never_500(hooks: Hooks, payload: Any) -> None:
    response = hooks.sendgrid(json.dumps(payload).encode())
    assert response.status_code in (200, 400), response.text


@FUZZ
@given(data=st.data())
def test_signed_event_batches_never_500(world: World, hooks: Hooks, data: st.DataObject) -> None:
    uids, addresses = _world_messages(world)
    event = st.fixed_dictionaries(
        {},
        optional={
            "event": st.sampled_from(EVENT_NAMES) | text | scalars,
            "sg_event_id": text | st.integers() | st.text(min_size=129, max_size=400),
            "timestamp": scalars,
            "email": st.sampled_from(addresses) | st.emails() | text,
            "message_id": st.sampled_from(uids) | text | scalars,
            "sg_message_id": st.just("fuzz0123456789fuzz0123.filter") | text,
            "type": st.sampled_from(["bounce", "blocked"]) | scalars,
            "reason": text,
            "url": text,
            "asm_group_id": scalars,
            "category": json_values,
        },
    )
    batch = data.draw(st.lists(event | json_values, max_size=8))
    response = hooks.sendgrid(batch)
    assert response.status_code == 200, response.text
    again = hooks.sendgrid(batch)  # a replay changes nothing and fails nothing
    assert again.status_code == 200 and again.json()["applied"] == 0


form_values = text | st.sampled_from(
    ["queued", "sent", "delivered", "undelivered", "failed", "21610", "STOP", "start", "HELP"]
)


@FUZZ
@given(data=st.data())
def test_signed_twilio_status_never_500(world: World, hooks: Hooks, data: st.DataObject) -> None:
    uids, addresses = _world_messages(world)
    form = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "MessageSid": st.just("SM" + "7" * 32) | text,
                "MessageStatus": form_values,
                "ErrorCode": form_values,
                "To": st.sampled_from(addresses) | text,
                "From": text,
            },
        )
        | st.dictionaries(text, text, max_size=5)
    )
    uid = data.draw(st.sampled_from(uids) | text | st.none())
    response = hooks.status(quote(uid, safe="") if uid else None, form)
    assert response.status_code in (200, 400), response.text


@FUZZ
@given(data=st.data())
def test_signed_inbound_sms_never_500(world: World, hooks: Hooks, data: st.DataObject) -> None:
    _, addresses = _world_messages(world)
    form = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "MessageSid": text,
                "From": st.sampled_from(addresses[1:]) | text,
                "Body": form_values,
                "To": text,
            },
        )
    )
    response = hooks.inbound(form)
    assert response.status_code in (200, 400), response.text


@FUZZ
@given(body=st.binary(max_size=500), signature=text, query=text)
def test_unsigned_twilio_garbage_is_4xx(
    hooks: Hooks, body: bytes, signature: str, query: str
) -> None:
    for path in (STATUS_PATH, INBOUND_PATH):
        response = hooks.client.post(
            f"{path}?{quote(query, safe='=&')}",
            content=body,
            headers={
                "X-Twilio-Signature": _header(signature),
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        assert 400 <= response.status_code < 500


@FUZZ
@given(token=text, body=st.binary(max_size=200))
def test_unsubscribe_tokens_never_500(world: World, hooks: Hooks, token: str, body: bytes) -> None:
    member = world.participant()
    with world.app.sessions() as session, session.begin():
        genuine = signer_for(session, world.app.settings).sign(member.id)
    for candidate in (token, genuine + token, genuine[: len(token) % len(genuine)]):
        path = f"/u/{quote(candidate, safe='')}"
        assert hooks.client.get(path).status_code in (200, 404)
        assert hooks.client.post(path, content=body).status_code in (200, 404)
