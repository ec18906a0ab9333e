"""The Twilio adapter (official SDK) against a real local server that validates the form body
with Twilio's published OpenAPI document."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
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
from engine.channels.twilio import RedirectingHttpClient, TwilioChannel
from engine.clock import FrozenClock
from engine.errors import ConfigError
from engine.testing.contracts import validate_twilio_message_resource
from engine.testing.fake_server import Canned
from engine.testing.fake_twilio import FakeTwilio

SERVICE_SID = "MG" + "ab" * 16
CALLBACK = "https://campaigns.example.com/hooks/twilio/status?message_id=sms-1"


@pytest.fixture
def server() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


def make_channel(server: FakeTwilio, clock: FrozenClock, **options: object) -> TwilioChannel:
    settings: dict[str, object] = {
        "from_number": "+12025550100",
        "base_url": server.url,
        "clock": clock,
        "read_timeout": 10,
    }
    settings.update(options)
    return TwilioChannel(server.account_sid, server.auth_token, **settings)  # type: ignore[arg-type]


@pytest.fixture
def channel(server: FakeTwilio, clock: FrozenClock) -> Iterator[TwilioChannel]:
    twilio = make_channel(server, clock)
    yield twilio
    twilio.close()


def sms(message_id: str = "sms-1", **fields: object) -> OutboundSms:
    values: dict[str, object] = {
        "message_id": message_id,
        "to": "+12025550123",
        "body": "Your 1,200 points expire on March 31. Reply STOP to opt out.",
        "status_callback": CALLBACK.replace("sms-1", message_id),
    }
    values.update(fields)
    return OutboundSms(**values)  # type: ignore[arg-type]


def test_a_valid_send_reaches_the_server_as_the_contract_describes(
    server: FakeTwilio, channel: TwilioChannel, clock: FrozenClock
) -> None:
    result = channel.send(sms())

    [request] = server.requests
    assert request.path == server.messages_path()
    assert request.contract_errors == ()
    assert request.form == {
        "To": ["+12025550123"],
        "From": ["+12025550100"],
        "Body": ["Your 1,200 points expire on March 31. Reply STOP to opt out."],
        "StatusCallback": [CALLBACK],
    }
    assert "message_id=sms-1" in request.form["StatusCallback"][0]
    scheme, _, credentials = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(credentials).decode() == f"{server.account_sid}:{server.auth_token}"

    answer = request.answer_json
    assert request.answered == 201 and validate_twilio_message_resource(answer) == []
    assert result == SendResult(
        provider_message_id=answer["sid"], accepted_at=clock.now(), raw_status=201
    )
    assert result.provider_message_id is not None
    assert result.provider_message_id.startswith("SM") and len(result.provider_message_id) == 34


def test_the_messaging_service_is_used_when_configured(
    server: FakeTwilio, clock: FrozenClock
) -> None:
    channel = make_channel(server, clock, from_number=None, messaging_service_sid=SERVICE_SID)
    try:
        channel.send(sms())
        channel.send(sms("sms-2", from_number="+12025550199"))  # a message may name its sender
    finally:
        channel.close()
    first, second = server.requests
    assert first.form is not None and second.form is not None
    assert first.form["MessagingServiceSid"] == [SERVICE_SID] and "From" not in first.form
    assert second.form["From"] == ["+12025550199"] and "MessagingServiceSid" not in second.form
    assert first.contract_errors == () and second.contract_errors == ()


def test_the_sdk_session_keeps_connections_alive_and_reconnects(
    server: FakeTwilio, channel: TwilioChannel
) -> None:
    for i in range(4):
        channel.send(sms(f"sms-{i}"))
    assert len({request.peer for request in server.requests}) == 1

    server.drop_connections()  # the server's idle timeout: the pool must reconnect quietly
    channel.send(sms("after-drop"))
    assert [r.answered for r in server.requests] == [201] * 5


def _twilio_error(status: int, code: int, message: str) -> dict[str, object]:
    return {"code": code, "message": message, "more_info": "", "status": status}


@pytest.mark.parametrize(
    ("canned", "expected", "attributes"),
    [
        pytest.param(
            Canned.json(
                400, _twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
            ),
            RecipientError,
            {"suppress": True, "invalid_address": False, "code": "21610"},
            id="21610-unsubscribed",
        ),
        pytest.param(
            Canned.json(400, _twilio_error(400, 21211, "Invalid 'To' Phone Number")),
            RecipientError,
            {"suppress": False, "invalid_address": True, "code": "21211"},
            id="21211-invalid-to",
        ),
        pytest.param(
            Canned.json(400, _twilio_error(400, 21614, "'To' number is not a valid mobile number")),
            RecipientError,
            {"suppress": False, "invalid_address": True, "code": "21614"},
            id="21614-not-mobile",
        ),
        pytest.param(
            # Content Twilio refuses (issue #16): this message's fault, not the provider's, so
            # it never counts toward the run's failure streak (RecipientError does not).
            Canned.json(
                400, _twilio_error(400, 21617, "The concatenated message body is too long")
            ),
            MessageError,
            {"status": 400},
            id="21617-body-too-long",
        ),
        pytest.param(
            Canned.json(400, _twilio_error(400, 21999, "Something else about the request")),
            MessageError,
            {"status": 400},
            id="400-other-code",
        ),
        pytest.param(
            Canned.json(429, _twilio_error(429, 20429, "Too Many Requests"), Retry_After="12"),
            RetryableError,
            {"retry_after": 12.0, "status": 429},
            id="429-retry-after-seconds",
        ),
        pytest.param(
            "429-date", RetryableError, {"retry_after": 45.0, "status": 429}, id="429-http-date"
        ),
        pytest.param(
            Canned.json(500, _twilio_error(500, 20500, "Internal Server Error")),
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
            Canned.json(403, _twilio_error(403, 20003, "Permission Denied")),
            CampaignStopError,
            {"status": 403},
            id="403",
        ),
    ],
)
def test_error_table(
    server: FakeTwilio,
    channel: TwilioChannel,
    clock: FrozenClock,
    canned: Canned | str,
    expected: type[ChannelError],
    attributes: dict[str, object],
) -> None:
    if canned == "429-date":
        when = format_datetime(clock.now() + timedelta(seconds=45), usegmt=True)
        canned = Canned.json(429, _twilio_error(429, 20429, "Too Many Requests"), Retry_After=when)
    assert isinstance(canned, Canned)
    server.script(server.messages_path(), canned)

    with pytest.raises(ChannelError) as caught:
        channel.send(sms())

    assert type(caught.value) is expected
    for name, value in attributes.items():
        assert getattr(caught.value, name) == value
    assert "sms-1" in str(caught.value)
    assert len(server.requests) == 1


def test_a_wrong_auth_token_stops_the_campaign(server: FakeTwilio, clock: FrozenClock) -> None:
    channel = TwilioChannel(
        server.account_sid, "wrong-token", from_number="+12025550100", base_url=server.url
    )
    try:
        with pytest.raises(CampaignStopError, match=r"401.*20003"):
            channel.send(sms())
    finally:
        channel.close()
    assert [r.answered for r in server.requests] == [401]


def test_a_number_the_server_rejects_is_an_invalid_address(
    server: FakeTwilio, channel: TwilioChannel
) -> None:
    # Not scripted: the fake's contract validation rejects To (format: phone-number) as 21211.
    with pytest.raises(RecipientError) as caught:
        channel.send(sms(to="555-0123"))
    assert caught.value.invalid_address and caught.value.code == "21211"
    [request] = server.requests
    assert request.answered == 400 and request.contract_errors


def test_connection_refused_is_retryable(clock: FrozenClock) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    channel = TwilioChannel(
        "AC" + "0" * 32, "token", from_number="+12025550100", base_url=f"http://127.0.0.1:{port}"
    )
    try:
        with pytest.raises(RetryableError, match="could not connect"):
            channel.send(sms())
    finally:
        channel.close()


def test_a_read_timeout_after_sending_is_an_unknown_outcome(
    server: FakeTwilio, clock: FrozenClock
) -> None:
    server.script(server.messages_path(), Canned.slow(30))  # cut short when the server stops
    channel = make_channel(server, clock, read_timeout=1)
    try:
        with pytest.raises(UnknownOutcomeError, match="not resending"):
            channel.send(sms())
        assert len(server.requests) == 1
        channel.send(sms("sms-2"))
    finally:
        channel.close()
    assert len(server.requests) == 2


def test_a_hang_up_after_sending_is_an_unknown_outcome(
    server: FakeTwilio, channel: TwilioChannel
) -> None:
    server.script(server.messages_path(), Canned.hang_up_now())
    with pytest.raises(UnknownOutcomeError):
        channel.send(sms())
    assert len(server.requests) == 1


def test_an_email_is_refused_without_a_request(server: FakeTwilio, channel: TwilioChannel) -> None:
    message = OutboundEmail(
        message_id="e1", to_email="a@example.com", from_email="b@example.com", subject="s", text="t"
    )
    with pytest.raises(ChannelError, match="sends sms"):
        channel.send(message)
    assert server.requests == []


def test_urls_are_rewritten_only_when_a_base_url_is_set() -> None:
    sdk_url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json"
    local = RedirectingHttpClient("http://127.0.0.1:9999/prefix/")
    assert (
        local.rewrite(sdk_url)
        == "http://127.0.0.1:9999/prefix/2010-04-01/Accounts/AC1/Messages.json"
    )
    assert local.rewrite("https://example.org/x") == "https://example.org/x"
    assert RedirectingHttpClient().rewrite(sdk_url) == sdk_url
    local.close()


def test_a_channel_without_a_sender_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="TWILIO_MESSAGING_SERVICE_SID or CAMPAIGN_SMS_FROM"):
        TwilioChannel("AC" + "0" * 32, "token")
