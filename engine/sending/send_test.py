"""`campaign send-test`: send ONE real message of a campaign step to an address of your choice.

The step is rendered exactly as `campaign preview` renders it: for a real participant when one
is named (their locale, their variant, their unsubscribe link), else for the sample member that
`campaign validate` uses; either way a first SMS gets the opt-out notice only if the program
keeps it on (``programs set --no-sms-opt-out-notice``). The subject (SMS: the body) is
prefixed "[TEST] ". It goes through the configured channel (SendGrid / Twilio / the file sink)
and is not an outbox message of any run: reports never count it. A suppressed address is
refused, as it would be in a campaign.

It is a real message from the campaign's sender, so it takes a slot of the same rate limit
the dispatcher paces that channel and sender with (a Twilio long code sends about 1 SMS/s): on
PostgreSQL the timeline shared through the database with every running dispatcher
(engine/sending/shared_ratelimit.py), so a test sent while they send waits its turn instead
of pushing the sender over its rate; on SQLite this process's own bucket. It waits at most
``max_wait`` seconds: a slot further off means dispatchers hold the sender's rate for longer,
and the test is refused (:class:`SenderBusyError`) rather than left hanging.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from engine.channels.base import Channel
from engine.consent.suppressions import is_suppressed, normalise_address
from engine.definitions.loader import LoadedDefinition
from engine.definitions.schema import Step
from engine.errors import ConfigError, EngineError, InputError, NotFoundError
from engine.preview import preview
from engine.programs import opt_out_notice_of, sms_opt_out_notices
from engine.sending.outbox import build_outbound
from engine.sending.ratelimit import SlotTooFarError
from engine.sending.sender_limits import configured_rate, rate_key, sender_limit
from engine.sending.shared_ratelimit import SharedTokenBucket
from engine.settings import Settings
from engine.templates import CampaignData, Renderer, StepData, sample_context

TEST_PREFIX = "[TEST] "
MAX_WAIT_SECONDS = 5.0  # for a slot of the sender's rate limit


class SenderBusyError(EngineError):
    """The sender's rate limit has no slot for the test message within the wait allowed."""


@dataclass(frozen=True)
class TestSend:
    campaign: str
    step: str
    channel: str
    to: str
    template: str
    variant: str | None
    participant: str | None
    message_id: str
    provider: str
    provider_message_id: str | None
    subject: str | None
    body: str | None
    accepted_at: datetime
    waited: float  # seconds spent waiting for a slot of the sender's rate limit

    __test__ = False  # not a pytest test class, despite the name


def _sample_content(
    loaded: LoadedDefinition, step: Step, settings: Settings, *, opt_out_notice: bool
) -> tuple[str, str | None, dict[str, Any]]:
    definition = loaded.definition
    if step.variants is not None:
        variant: str | None = step.variants[0].name
        template = step.variants[0].template
    else:
        variant, template = None, step.template or ""
    renderer = Renderer(
        settings.templates_dir,
        postal_address=settings.postal_address,
        public_url=settings.public_url,
    )
    context = sample_context(step.channel)
    context["campaign"] = CampaignData(definition.name, definition.description)
    context["step"] = StepData(step.id)
    if step.channel == "email":
        email = renderer.render_email(template, context, None)
        content: dict[str, Any] = {
            "subject": email.subject,
            "html": email.html,
            "text": email.text,
            "headers": email.headers,
            "template_id": email.template_id,
            "dynamic_template_data": email.dynamic_template_data,
        }
    else:
        first_sms = next(s for s in definition.steps if s.channel == "sms")
        sms = renderer.render_sms(
            template,
            context,
            None,
            first_in_campaign=first_sms is step,
            opt_out_notice=opt_out_notice,
        )
        content = {"body": sms.body, "encoding": sms.encoding, "segments": sms.segments}
    return template, variant, content


def _take_slot(
    session: Session, kind: str, channel: Channel, settings: Settings, *, max_wait: float
) -> float:
    """Wait for one slot of the rate limit the dispatcher sends ``kind`` through ``channel``
    with (same key, same rate; see the module docstring); return the seconds waited."""
    engine = session.get_bind().engine
    rate, key = configured_rate(kind, settings), rate_key(kind, channel, settings)
    limit = sender_limit(
        engine if engine.dialect.name == "postgresql" else None, kind, channel, settings
    )
    try:
        return limit.acquire(max_wait=max_wait)
    except SlotTooFarError as exc:
        raise SenderBusyError(
            f"the rate limit of {key} ({rate:g}/s) has no slot within {max_wait:g} s (the next "
            f"is {exc.wait:.1f} s away: dispatchers are sending through it); the test was not "
            "sent: try again in a moment"
        ) from None
    finally:
        if isinstance(limit, SharedTokenBucket):
            limit.close()


def send_test(
    session: Session,
    loaded: LoadedDefinition,
    step_id: str,
    to: str,
    *,
    settings: Settings,
    channels: dict[str, Channel],
    participant: str | None = None,
    max_wait: float = MAX_WAIT_SECONDS,
) -> TestSend:
    """Render step ``step_id`` (for ``participant``, else a sample member) and send it to
    ``to`` through the channel of the step's kind, in a slot of its sender's rate limit
    (waiting at most ``max_wait`` seconds for one)."""
    definition = loaded.definition
    step = next((s for s in definition.steps if s.id == step_id), None)
    if step is None:
        known = ", ".join(s.id for s in definition.steps)
        raise NotFoundError(f"campaign {loaded.name} has no step {step_id!r} (steps: {known})")
    if step.channel == "call":
        raise InputError(f"step {step_id} is a call step: there is no message to send")
    address = normalise_address(to, default_region=settings.default_region)
    if step.channel == "email" and "@" not in address:
        raise InputError(f"step {step_id} sends email; --to {to!r} is not an email address")
    if step.channel == "sms" and "@" in address:
        raise InputError(f"step {step_id} sends SMS; --to {to!r} is not a phone number")
    if is_suppressed(session, address, step.channel, default_region=settings.default_region):
        raise InputError(f"{address} is suppressed on {step.channel}; not sending a test to it")
    channel = channels.get(step.channel)
    if channel is None:
        raise ConfigError(f"no {step.channel} channel is configured")

    if participant is not None:
        shown = preview(session, loaded, step_id, participant, settings=settings)
        template, variant = shown.template, shown.variant
        content: dict[str, Any] = dict(
            (shown.email if step.channel == "email" else shown.sms) or {}
        )
    else:
        template, variant, content = _sample_content(
            loaded,
            step,
            settings,
            opt_out_notice=opt_out_notice_of(
                loaded.definition.program, sms_opt_out_notices(session)
            ),
        )
    message_id = uuid.uuid4().hex
    message = build_outbound(
        uid=message_id,
        channel=step.channel,
        to=address,
        content=content,
        settings=settings,
        campaign=definition.name,
        subject_prefix=TEST_PREFIX,
    )
    waited = _take_slot(session, step.channel, channel, settings, max_wait=max_wait)
    result = channel.send(message)
    subject = getattr(message, "subject", None)
    body = getattr(message, "body", None) or getattr(message, "text", None)
    return TestSend(
        campaign=definition.name,
        step=step_id,
        channel=step.channel,
        to=address,
        template=template,
        variant=variant,
        participant=participant,
        message_id=message_id,
        provider=channel.name,
        provider_message_id=result.provider_message_id,
        subject=subject,
        body=body,
        accepted_at=result.accepted_at,
        waited=waited,
    )


__all__ = ["MAX_WAIT_SECONDS", "TEST_PREFIX", "SenderBusyError", "TestSend", "send_test"]
