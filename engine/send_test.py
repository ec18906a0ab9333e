"""`campaign send-test`: send ONE real message of a campaign step to an address of your choice.

The step is rendered exactly as `campaign preview` renders it: for a real participant when one
is named (their locale, their variant, their unsubscribe link), else for the sample member that
`campaign validate` uses; either way a first SMS gets the opt-out notice only if the program
keeps it on (``programs set --no-sms-opt-out-notice``). The subject (SMS: the body) is
prefixed "[TEST] ". It goes through the configured channel (SendGrid / Twilio / the file sink)
and is not an outbox message of any run: reports never count it. A suppressed address is
refused, as it would be in a campaign.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from engine.channels.base import Channel
from engine.definitions.loader import LoadedDefinition
from engine.definitions.schema import Step
from engine.errors import ConfigError, InputError, NotFoundError
from engine.outbox import build_outbound
from engine.participants.suppressions import is_suppressed, normalise_address
from engine.preview import preview
from engine.programs import get_program
from engine.settings import Settings
from engine.templates import CampaignData, Renderer, StepData, sample_context

TEST_PREFIX = "[TEST] "


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


def _opt_out_notice(session: Session, loaded: LoadedDefinition) -> bool:
    """The campaign's program's ``sms_opt_out_notice``; on (the default) when the program is
    not in the database yet (a sample send needs nothing else of it)."""
    try:
        return get_program(session, loaded.definition.program).sms_opt_out_notice
    except (NotFoundError, InputError):
        return True


def send_test(
    session: Session,
    loaded: LoadedDefinition,
    step_id: str,
    to: str,
    *,
    settings: Settings,
    channels: dict[str, Channel],
    participant: str | None = None,
) -> TestSend:
    """Render step ``step_id`` (for ``participant``, else a sample member) and send it to
    ``to`` through the channel of the step's kind."""
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
            loaded, step, settings, opt_out_notice=_opt_out_notice(session, loaded)
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
    )


__all__ = ["TEST_PREFIX", "TestSend", "send_test"]
