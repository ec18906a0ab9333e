"""Provider channels: SendGrid and Twilio when their credentials are set, else the file sink.

``build_channels`` is called by the composition root; everything else imports from
``engine.channels.base``.
"""

from __future__ import annotations

from engine.channels.base import (
    EMAIL,
    SMS,
    CampaignStopError,
    Channel,
    ChannelError,
    DuplicateSendError,
    OutboundEmail,
    OutboundSms,
    RecipientError,
    RetryableError,
    SendResult,
    UnknownOutcomeError,
)
from engine.clock import Clock, SystemClock
from engine.errors import ConfigError
from engine.settings import Settings

__all__ = [
    "EMAIL",
    "SMS",
    "CampaignStopError",
    "Channel",
    "ChannelError",
    "DuplicateSendError",
    "OutboundEmail",
    "OutboundSms",
    "RecipientError",
    "RetryableError",
    "SendResult",
    "UnknownOutcomeError",
    "build_channels",
]


def build_channels(settings: Settings, *, clock: Clock | None = None) -> dict[str, Channel]:
    """One channel per kind ("email", "sms"): the provider whose credentials are set, else
    the file sink writing into ``settings.outbox_dir``. Half-set credentials are an error
    rather than a silent fall back to the sink."""
    clock = clock or SystemClock()
    channels: dict[str, Channel] = {}
    if settings.sendgrid_api_key:
        from engine.channels.sendgrid import SendGridChannel

        channels[EMAIL] = SendGridChannel(
            settings.sendgrid_api_key, host=settings.sendgrid_host, clock=clock
        )
    else:
        from engine.channels.sink import SinkChannel

        channels[EMAIL] = SinkChannel(settings.outbox_dir, kind=EMAIL, clock=clock)
    sid, token = settings.twilio_account_sid, settings.twilio_auth_token
    if sid or token:
        if not (sid and token):
            missing = "TWILIO_AUTH_TOKEN" if sid else "TWILIO_ACCOUNT_SID"
            raise ConfigError(f"{missing} is not set (both Twilio credentials are needed)")
        from engine.channels.twilio import TwilioChannel

        channels[SMS] = TwilioChannel(
            sid,
            token,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            from_number=settings.sms_from,
            base_url=settings.twilio_base_url,
            clock=clock,
        )
    else:
        from engine.channels.sink import SinkChannel

        channels[SMS] = SinkChannel(settings.outbox_dir, kind=SMS, clock=clock)
    return channels
