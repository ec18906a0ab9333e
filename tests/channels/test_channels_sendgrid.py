"""The SendGrid adapter against a real local server that validates bodies with SendGrid's
published OpenAPI document."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from email.utils import format_datetime

import pytest

from engine.channels.base import (
    CampaignStopError,
    ChannelError,
    MessageError,
    OutboundEmail,
    OutboundSms,
    RecipientError,
    RetryableError,
    SendResult,
    UnknownOutcomeError,
)
from engine.channels.sendgrid import MAIL_SEND, SendGridChannel, build_mail
from engine.clock import FrozenClock
from engine.testing.contracts import validate_sendgrid_mail_send
from engine.testing.fake_sendgrid import FakeSendGrid
from engine.testing.fake_server import Canned

API_KEY = "SG.test-key"


@pytest.fixture
def server() -> Iterator[FakeSendGrid]:
    with FakeSendGrid(API_KEY) as fake:
        yield fake


@pytest.fixture
def channel(server: FakeSendGrid, clock: FrozenClock) -> Iterator[SendGridChannel]:
    sendgrid = SendGridChannel(API_KEY, host=server.url, clock=clock, read_timeout=10)
    yield sendgrid
    sendgrid.close()


def email(message_id: str = "msg-1", **fields: object) -> OutboundEmail:
    values: dict[str, object] = {
        "message_id": message_id,
        "to_email": "alice@example.com",
        "to_name": "Alice Member",
        "from_email": "rewards@example.com",
        "from_name": "Example Rewards",
        "reply_to": "help@example.com",
        "subject": "Your 1,200 points expire soon",
        "text": "Redeem them before March 31.",
        "html": "<p>Redeem them before <b>March 31</b>.</p>",
        "headers": {
            "List-Unsubscribe": f"<https://campaigns.example.com/u/{message_id}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        "categories": ("points-expiry",),
        "custom_args": {"campaign": "expiry-2026"},
    }
    values.update(fields)
    return OutboundEmail(**values)  # type: ignore[arg-type]


def template_email(i: int, template_id: str = "d-expiry") -> OutboundEmail:
    return OutboundEmail(
        message_id=f"tpl-{i}",
        to_email=f"member{i}@example.com",
        from_email="rewards@example.com",
        template_id=template_id,
        dynamic_template_data={"first_name": f"M{i}", "points": i},
        headers={"List-Unsubscribe": f"<https://campaigns.example.com/u/tpl-{i}>"},
    )


def test_a_valid_send_reaches_the_server_as_the_contract_describes(
    server: FakeSendGrid, channel: SendGridChannel, clock: FrozenClock
) -> None:
    result = channel.send(email())

    [request] = server.requests
    assert request.method == "POST" and request.path == MAIL_SEND
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.contract_errors == ()
    assert validate_sendgrid_mail_send(request.json) == []
    body = request.json
    [personalization] = body["personalizations"]
    assert personalization["to"] == [{"email": "alice@example.com", "name": "Alice Member"}]
    assert personalization["custom_args"] == {"campaign": "expiry-2026", "message_id": "msg-1"}
    assert personalization["headers"] == {
        "List-Unsubscribe": "<https://campaigns.example.com/u/msg-1>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert body["from"] == {"email": "rewards@example.com", "name": "Example Rewards"}
    assert body["reply_to"] == {"email": "help@example.com"}
    assert body["subject"] == "Your 1,200 points expire soon"
    assert [part["type"] for part in body["content"]] == ["text/plain", "text/html"]
    assert body["categories"] == ["points-expiry"]

    assert result == SendResult(
        provider_message_id=request.answer_headers["X-Message-Id"],
        accepted_at=clock.now(),
        raw_status=202,
    )


def test_a_template_message_sends_template_id_and_data(
    server: FakeSendGrid, channel: SendGridChannel
) -> None:
    channel.send(template_email(7))
    [request] = server.requests
    assert request.contract_errors == ()
    assert request.json["template_id"] == "d-expiry"
    assert "content" not in request.json and "subject" not in request.json
    [personalization] = request.json["personalizations"]
    assert personalization["dynamic_template_data"] == {"first_name": "M7", "points": 7}
    assert personalization["custom_args"] == {"message_id": "tpl-7"}


@pytest.mark.parametrize(
    "subject",
    ["Vos 1 200 points expirent bientôt \u2028 ☕", "a lone surrogate \ud800 still goes"],
    ids=["non-ascii", "lone-surrogate"],
)
def test_the_body_on_the_wire_is_the_built_mail(
    server: FakeSendGrid, channel: SendGridChannel, subject: str
) -> None:
    # The body is serialised with orjson, and json.dumps for what orjson refuses: either
    # way the server reads exactly what build_mail made.
    message = email(subject=subject)
    channel.send(message)
    [request] = server.requests
    assert request.contract_errors == ()
    assert request.json == build_mail(message)


def test_connections_are_kept_alive_and_reopened_after_the_server_drops_them(
    server: FakeSendGrid, channel: SendGridChannel
) -> None:
    for i in range(5):
        channel.send(email(f"keep-{i}"))
    assert len({request.peer for request in server.requests}) == 1  # one connection

    server.drop_connections()  # the server's idle timeout, between two sends
    channel.send(email("after-drop"))  # must reconnect, not report an unknown outcome
    assert [r.answered for r in server.requests] == [202] * 6
    assert server.requests[-1].peer != server.requests[0].peer


def _http_date(clock: FrozenClock, seconds: int) -> str:
    return format_datetime(clock.now() + timedelta(seconds=seconds), usegmt=True)


def _sendgrid_error(field: str | None, message: str) -> dict[str, object]:
    return {"errors": [{"field": field, "message": message, "help": None}]}


@pytest.mark.parametrize(
    ("canned", "expected", "attributes"),
    [
        pytest.param(
            Canned.json(429, _sendgrid_error(None, "too many requests"), Retry_After="7"),
            RetryableError,
            {"retry_after": 7.0, "status": 429},
            id="429-retry-after-seconds",
        ),
        pytest.param(
            "429-date", RetryableError, {"retry_after": 90.0, "status": 429}, id="429-http-date"
        ),
        pytest.param(
            Canned.json(500, _sendgrid_error(None, "internal error")),
            RetryableError,
            {"retry_after": None, "status": 500},
            id="500",
        ),
        pytest.param(
            Canned(status=502, body="<html>Bad Gateway</html>"),
            RetryableError,
            {"status": 502},
            id="502-not-json",
        ),
        pytest.param(
            Canned.json(403, _sendgrid_error(None, "access forbidden")),
            CampaignStopError,
            {"status": 403},
            id="403",
        ),
        pytest.param(
            Canned.json(
                400, _sendgrid_error("personalizations.0.to", "Does not contain a valid address.")
            ),
            RecipientError,
            {"invalid_address": True, "suppress": False, "code": "400"},
            id="400-recipient-field",
        ),
        pytest.param(
            Canned.json(400, _sendgrid_error("template_id", "The template_id is not a valid id")),
            MessageError,
            {"status": 400},
            id="400-other-field",
        ),
        pytest.param(
            Canned.json(413, _sendgrid_error(None, "payload too large")),
            MessageError,
            {"status": 413},
            id="413",
        ),
        pytest.param(
            "429-reset",
            RetryableError,
            {"retry_after": 42.0, "status": 429},
            id="429-ratelimit-reset",
        ),
        pytest.param(
            Canned.json(404, _sendgrid_error(None, "not found")),
            ChannelError,
            {"status": 404},
            id="404-not-about-the-message",
        ),
    ],
)
def test_error_table(
    server: FakeSendGrid,
    channel: SendGridChannel,
    clock: FrozenClock,
    canned: Canned | str,
    expected: type[ChannelError],
    attributes: dict[str, object],
) -> None:
    if canned == "429-date":
        canned = Canned.json(
            429, _sendgrid_error(None, "slow down"), Retry_After=_http_date(clock, 90)
        )
    elif canned == "429-reset":  # no Retry-After: SendGrid's own header says when
        reset = str(int(clock.now().timestamp()) + 42)
        canned = Canned.json(429, _sendgrid_error(None, "slow down"), X_RateLimit_Reset=reset)
    assert isinstance(canned, Canned)
    server.script(MAIL_SEND, canned)

    with pytest.raises(ChannelError) as caught:
        channel.send(email())

    assert type(caught.value) is expected
    for name, value in attributes.items():
        assert getattr(caught.value, name) == value
    assert "msg-1" in str(caught.value)
    assert len(server.requests) == 1


def test_a_wrong_api_key_stops_the_campaign(server: FakeSendGrid, clock: FrozenClock) -> None:
    channel = SendGridChannel("SG.revoked", host=server.url, clock=clock)
    try:
        with pytest.raises(CampaignStopError, match=r"401.*authorization grant is invalid"):
            channel.send(email())
    finally:
        channel.close()
    assert [r.answered for r in server.requests] == [401]


def test_an_address_the_server_rejects_is_a_recipient_error(
    server: FakeSendGrid, channel: SendGridChannel
) -> None:
    # Not scripted: the fake's contract validation rejects the address (format: email).
    with pytest.raises(RecipientError) as caught:
        channel.send(email(to_email="alice@@example"))
    assert caught.value.invalid_address and not caught.value.suppress
    assert "personalizations.0.to.0.email" in caught.value.reason
    [request] = server.requests
    assert request.answered == 400 and request.contract_errors


def test_connection_refused_is_retryable_and_sends_nothing(clock: FrozenClock) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    channel = SendGridChannel(API_KEY, host=f"http://127.0.0.1:{port}", clock=clock)
    try:
        with pytest.raises(RetryableError, match="could not connect"):
            channel.send(email())
    finally:
        channel.close()


def test_a_read_timeout_after_sending_is_an_unknown_outcome(
    server: FakeSendGrid, clock: FrozenClock
) -> None:
    # The server's late answer is cut short when it stops, so a long delay costs nothing.
    server.script(MAIL_SEND, Canned.slow(30))
    channel = SendGridChannel(API_KEY, host=server.url, clock=clock, read_timeout=1)
    try:
        with pytest.raises(UnknownOutcomeError, match=r"within 1s.*not resending"):
            channel.send(email())
        assert len(server.requests) == 1  # it did reach the provider
        channel.send(email("next"))  # a fresh connection, not the one awaiting the late answer
    finally:
        channel.close()
    assert len(server.requests) == 2


def test_a_hang_up_after_sending_is_an_unknown_outcome(
    server: FakeSendGrid, channel: SendGridChannel
) -> None:
    server.script(MAIL_SEND, Canned.hang_up_now())
    with pytest.raises(UnknownOutcomeError):
        channel.send(email())
    assert len(server.requests) == 1


def test_an_sms_is_refused_without_a_request(
    server: FakeSendGrid, channel: SendGridChannel
) -> None:
    with pytest.raises(ChannelError, match="sends email"):
        channel.send(OutboundSms(message_id="s1", to="+12025550100", body="hi"))
    assert server.requests == []


# ---------------------------------------------------------------- batches


def test_2500_template_messages_go_in_3_requests_of_at_most_1000(
    server: FakeSendGrid, channel: SendGridChannel
) -> None:
    messages = [template_email(i) for i in range(2500)]
    outcome = channel.send_batch(messages)

    requests = server.requests
    assert [len(r.json["personalizations"]) for r in requests] == [1000, 1000, 500]
    assert all(r.contract_errors == () and r.answered == 202 for r in requests)
    sent_ids = [
        p["custom_args"]["message_id"] for r in requests for p in r.json["personalizations"]
    ]
    assert sent_ids == [m.message_id for m in messages]
    recipients = [p["to"][0]["email"] for r in requests for p in r.json["personalizations"]]
    assert recipients == [m.to_email for m in messages]
    # Each message's result names the X-Message-Id of the request that carried it.
    for index, request in enumerate(requests):
        provider_id = request.answer_headers["X-Message-Id"]
        for personalization in request.json["personalizations"]:
            result = outcome[personalization["custom_args"]["message_id"]]
            assert isinstance(result, SendResult)
            assert result.provider_message_id == provider_id, index


def test_a_batch_groups_messages_by_template(
    server: FakeSendGrid, channel: SendGridChannel
) -> None:
    messages = [template_email(i, "d-one" if i % 2 else "d-two") for i in range(6)]
    outcome = channel.send_batch(messages)
    assert sorted(r.json["template_id"] for r in server.requests) == ["d-one", "d-two"]
    assert all(isinstance(result, SendResult) for result in outcome.values())
    assert set(outcome) == {m.message_id for m in messages}


def test_a_batch_drops_rejected_addresses_and_sends_the_rest(
    server: FakeSendGrid, clock: FrozenClock
) -> None:
    channel = SendGridChannel(API_KEY, host=server.url, clock=clock, batch_size=3)
    messages = [template_email(i) for i in range(5)]
    bad = OutboundEmail(
        message_id="tpl-bad",
        to_email="not an address",
        from_email="rewards@example.com",
        template_id="d-expiry",
        dynamic_template_data={},
    )
    try:
        outcome = channel.send_batch([*messages[:1], bad, *messages[1:]])
    finally:
        channel.close()

    rejected = outcome["tpl-bad"]
    assert isinstance(rejected, RecipientError) and rejected.invalid_address
    assert all(isinstance(outcome[m.message_id], SendResult) for m in messages)
    # Chunk 1 (tpl-0, tpl-bad, tpl-1) was refused, then resent without tpl-bad; chunk 2 went.
    assert [(r.answered, len(r.json["personalizations"])) for r in server.requests] == [
        (400, 3),
        (202, 2),
        (202, 3),
    ]


def test_a_throttled_batch_stops_and_leaves_the_rest_retryable(
    server: FakeSendGrid, clock: FrozenClock
) -> None:
    channel = SendGridChannel(API_KEY, host=server.url, clock=clock, batch_size=2)
    server.script(
        MAIL_SEND, Canned.json(202, None), Canned.json(429, {"errors": []}, Retry_After="30")
    )
    messages = [template_email(i) for i in range(7)]
    try:
        outcome = channel.send_batch(messages)
    finally:
        channel.close()

    assert len(server.requests) == 2  # the third and fourth requests were not attempted
    kinds = [type(outcome[m.message_id]) for m in messages]
    assert kinds == [SendResult] * 2 + [RetryableError] * 5
    retry_afters = {getattr(outcome[m.message_id], "retry_after", None) for m in messages[2:]}
    assert retry_afters == {30.0}


def test_a_batch_refused_credentials_stop_every_message(
    server: FakeSendGrid, clock: FrozenClock
) -> None:
    channel = SendGridChannel("SG.wrong", host=server.url, clock=clock, batch_size=2)
    try:
        outcome = channel.send_batch([template_email(i) for i in range(5)])
    finally:
        channel.close()
    assert len(server.requests) == 1
    assert {type(result) for result in outcome.values()} == {CampaignStopError}


def test_a_batch_refuses_duplicates_and_rendered_messages(channel: SendGridChannel) -> None:
    with pytest.raises(ValueError, match="twice"):
        channel.send_batch([template_email(1), template_email(1)])
    with pytest.raises(ValueError, match="dynamic templates"):
        channel.send_batch([email()])


def test_the_body_builder_uses_only_what_the_contract_allows() -> None:
    # custom_args at message level would be an object, which the contract types as a string:
    # our message id must only ever travel per personalization.
    body = build_mail(email())
    assert "custom_args" not in body
    assert validate_sendgrid_mail_send(body) == []


def test_threads_share_the_channel_with_a_connection_each(
    server: FakeSendGrid, channel: SendGridChannel
) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: channel.send(email(f"t-{i}")), range(40)))

    assert all(isinstance(result, SendResult) for result in results)
    requests = server.requests
    assert sorted(r.json["personalizations"][0]["custom_args"]["message_id"] for r in requests) == (
        sorted(f"t-{i}" for i in range(40))
    )
    assert len({r.peer for r in requests}) <= 4  # kept alive per thread, not per request
