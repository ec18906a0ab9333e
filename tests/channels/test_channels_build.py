"""build_channels picks each kind's adapter from the settings, and the pieces of base.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.channels import build_channels
from engine.channels.base import (
    Attachment,
    Channel,
    OutboundEmail,
    OutboundSms,
    parse_retry_after,
)
from engine.channels.sendgrid import SendGridChannel, build_mail, build_mail_with_sdk
from engine.channels.sink import SinkChannel
from engine.channels.twilio import TwilioChannel
from engine.clock import FrozenClock
from engine.errors import ConfigError
from engine.settings import Settings
from engine.testing.fake_sendgrid import FakeSendGrid
from engine.testing.fake_twilio import FakeTwilio

PROVIDER_ENV = [
    "SENDGRID_API_KEY",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_MESSAGING_SERVICE_SID",
    "CAMPAIGN_SMS_FROM",
    "CAMPAIGN_SENDGRID_HOST",
    "CAMPAIGN_TWILIO_BASE_URL",
]


@pytest.fixture(autouse=True)
def _no_provider_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fakes() -> Iterator[tuple[FakeSendGrid, FakeTwilio]]:
    with FakeSendGrid() as sendgrid, FakeTwilio() as twilio:
        yield sendgrid, twilio


def close_all(channels: dict[str, Channel]) -> None:
    for channel in channels.values():
        channel.close()


def test_without_credentials_both_kinds_go_to_the_sink(tmp_path: Path) -> None:
    channels = build_channels(Settings(outbox_dir=tmp_path / "outbox"))
    assert set(channels) == {"email", "sms"}
    for kind, channel in channels.items():
        assert isinstance(channel, SinkChannel) and isinstance(channel, Channel)
        assert channel.kind == kind and channel.outbox_dir == tmp_path / "outbox"


def test_credentials_select_the_providers_and_their_hosts(
    tmp_path: Path, clock: FrozenClock, fakes: tuple[FakeSendGrid, FakeTwilio]
) -> None:
    sendgrid, twilio = fakes
    settings = Settings(
        outbox_dir=tmp_path,
        sendgrid_api_key=sendgrid.api_key,
        sendgrid_host=sendgrid.url,
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=twilio.auth_token,
        twilio_messaging_service_sid="MG" + "0" * 32,
        twilio_base_url=twilio.url,
    )
    channels = build_channels(settings, clock=clock)
    try:
        assert isinstance(channels["email"], SendGridChannel)
        assert isinstance(channels["sms"], TwilioChannel)
        assert all(isinstance(c, Channel) for c in channels.values())
        # Aimed at the configured hosts: a send reaches each fake.
        email = OutboundEmail(
            message_id="m1",
            to_email="a@example.com",
            from_email="r@example.com",
            subject="s",
            text="t",
        )
        channels["email"].send(email)
        channels["sms"].send(OutboundSms(message_id="s1", to="+12025550123", body="hi"))
    finally:
        close_all(channels)
    assert [r.answered for r in sendgrid.requests] == [202]
    assert [r.answered for r in twilio.requests] == [201]
    assert list(tmp_path.iterdir()) == []  # nothing went to the sink


def test_one_provider_only_leaves_the_other_kind_on_the_sink(tmp_path: Path) -> None:
    channels = build_channels(Settings(outbox_dir=tmp_path, sendgrid_api_key="SG.x"))
    try:
        assert isinstance(channels["email"], SendGridChannel)
        assert isinstance(channels["sms"], SinkChannel)
    finally:
        close_all(channels)


def test_the_environment_is_where_credentials_come_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "1" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "secret")
    monkeypatch.setenv("CAMPAIGN_SMS_FROM", "+12025550100")
    channels = build_channels(Settings(outbox_dir=tmp_path))
    try:
        sms = channels["sms"]
        assert isinstance(sms, TwilioChannel) and sms.from_number == "+12025550100"
    finally:
        close_all(channels)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"twilio_account_sid": "AC" + "1" * 32}, "TWILIO_AUTH_TOKEN is not set"),
        ({"twilio_auth_token": "secret"}, "TWILIO_ACCOUNT_SID is not set"),
        (
            {"twilio_account_sid": "AC" + "1" * 32, "twilio_auth_token": "secret"},
            "needs a sender",
        ),
    ],
)
def test_half_set_twilio_settings_are_refused(
    tmp_path: Path, fields: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build_channels(Settings(outbox_dir=tmp_path, **fields))


# ---------------------------------------------------------------- base.py


NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@given(st.integers(min_value=0, max_value=10**7))
def test_retry_after_seconds(seconds: int) -> None:
    assert parse_retry_after(str(seconds), now=NOW) == float(seconds)


@given(st.integers(min_value=-86400, max_value=86400))
def test_retry_after_http_date_is_relative_to_now(offset: int) -> None:
    value = format_datetime(NOW + timedelta(seconds=offset), usegmt=True)
    assert parse_retry_after(value, now=NOW) == max(0.0, float(offset))


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2026"])
def test_retry_after_garbage_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


def test_an_email_always_carries_its_message_id_in_custom_args() -> None:
    message = OutboundEmail(
        message_id="m1",
        to_email="a@example.com",
        from_email="r@example.com",
        subject="s",
        text="t",
        custom_args={"campaign": "c1"},
    )
    assert message.custom_args == {"campaign": "c1", "message_id": "m1"}
    with pytest.raises(ValueError, match="another message_id"):
        OutboundEmail(
            message_id="m1",
            to_email="a@example.com",
            from_email="r@example.com",
            subject="s",
            text="t",
            custom_args={"message_id": "m2"},
        )


@pytest.mark.parametrize(
    "fields",
    [
        {"subject": "s"},  # no body
        {"text": "t"},  # no subject
        {"template_id": "legacy-123"},  # not a dynamic template
    ],
)
def test_an_incomplete_email_is_refused(fields: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="m1"):
        OutboundEmail(
            message_id="m1", to_email="a@example.com", from_email="r@example.com", **fields
        )  # type: ignore[arg-type]


_text = st.text(min_size=1, max_size=20)


@given(
    to_name=st.none() | st.just("") | _text,
    from_name=st.none() | _text,
    reply_to=st.none() | st.just("reply@example.com"),
    categories=st.lists(_text, max_size=3, unique=True),
    headers=st.dictionaries(st.sampled_from(["List-Unsubscribe", "X-Campaign"]), _text),
    custom_args=st.dictionaries(st.sampled_from(["campaign", "step"]), _text),
    text=st.none() | _text,
    html=st.none() | _text,
    template_data=st.none() | st.dictionaries(_text, st.integers() | _text, max_size=3),
    attachments=st.lists(st.binary(min_size=1, max_size=40), max_size=3),
)
def test_the_plain_mail_body_is_what_the_sendgrid_helpers_build(
    to_name: str | None,
    from_name: str | None,
    reply_to: str | None,
    categories: list[str],
    headers: dict[str, str],
    custom_args: dict[str, str],
    text: str | None,
    html: str | None,
    template_data: dict[str, object] | None,
    attachments: list[bytes],
) -> None:
    if template_data is not None:
        content: dict[str, object] = {
            "template_id": "d-" + "0" * 32,
            "dynamic_template_data": template_data,
        }
    else:
        content = {"subject": "Your points", "text": text, "html": html or ("" if text else "h")}
    message = OutboundEmail(
        message_id="m1",
        to_email="a@example.com",
        to_name=to_name,
        from_email="r@example.com",
        from_name=from_name,
        reply_to=reply_to,
        categories=tuple(categories),
        headers=headers,
        custom_args=custom_args,
        attachments=tuple(
            Attachment(f"part-{i}.csv", data, "text/csv") for i, data in enumerate(attachments)
        ),
        **content,  # type: ignore[arg-type]
    )
    assert build_mail(message) == build_mail_with_sdk(message)
