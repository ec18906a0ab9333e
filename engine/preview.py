"""`campaign preview`: exactly what one participant would receive for one step of a campaign."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.consent.unsubscribe import UnsubscribeSigner, signing_key
from engine.consent.wording import REASON_WORDS, how_to_state
from engine.db.models import Participant
from engine.definitions.loader import LoadedDefinition
from engine.definitions.schema import Step
from engine.errors import EngineError, InputError, NotFoundError
from engine.programs import get_program
from engine.sequencing.facts import closed_channels_of
from engine.settings import Settings
from engine.templates import Renderer, message_context
from engine.variants import assign_variant, variant_salt

if TYPE_CHECKING:
    from engine.audience import ExplainNode
    from engine.planning import GlobalCap

# Re-exported: the assignment lives in engine.variants, shared with the sequencer.
__all__ = [
    "Preview",
    "StepSmsSize",
    "assign_variant",
    "preview",
    "segment_warning",
    "sms_step_sizes",
    "variant_salt",
]


@dataclass
class Preview:
    campaign: str
    program: str
    step: str
    channel: str
    external_id: str
    locale: str | None
    template: str
    variant: str | None
    email: dict[str, Any] | None = None
    sms: dict[str, Any] | None = None
    call: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    # Set when the member would not be enrolled now (outside the audience, or excluded), and
    # why: a preview of someone the campaign will never reach must not pass for a real one.
    not_enrolled: str | None = None
    # Set when the step's channel is closed for the member now (opted out, suppressed, consent
    # not stated, no address), and why: the step would not reach them, whatever it renders.
    channel_closed: str | None = None


def _step(loaded: LoadedDefinition, step_id: str) -> Step:
    try:
        return loaded.definition.step(step_id)
    except KeyError:
        known = ", ".join(step.id for step in loaded.definition.steps)
        raise NotFoundError(
            f"campaign {loaded.name} has no step {step_id!r} (steps: {known})"
        ) from None


def preview(
    session: Session,
    loaded: LoadedDefinition,
    step_id: str,
    external_id: str,
    *,
    settings: Settings,
    variant: str | None = None,
    at: datetime | None = None,
    global_cap: GlobalCap | None = None,
) -> Preview:
    """Render step ``step_id`` of ``loaded`` for participant ``external_id`` in their locale.
    A/B steps use ``variant`` when given, else the participant's deterministic variant. With
    ``at``, ``not_enrolled`` says whether (and why) the member is outside the campaign then."""
    definition = loaded.definition
    step = _step(loaded, step_id)
    program = get_program(session, definition.program)
    participant = session.scalar(
        select(Participant).where(
            Participant.program_id == program.id, Participant.external_id == external_id
        )
    )
    if participant is None:
        raise NotFoundError(f"no participant {external_id!r} in program {program.key}")

    chosen: str | None = None
    if step.variants is not None:
        if variant is None:
            picked = assign_variant(step.variants, participant.sample_key, loaded.name, step.id)
        else:
            found = [v for v in step.variants if v.name == variant]
            if not found:
                names = ", ".join(v.name for v in step.variants)
                raise InputError(f"step {step.id} has no variant {variant!r} (variants: {names})")
            picked = found[0]
        chosen, template = picked.name, picked.template
    elif variant is not None:
        raise InputError(f"step {step.id} is not an A/B test; it has no variants")
    else:
        named = step.script if step.channel == "call" else step.template
        assert named is not None  # the schema requires one for the step's channel
        template = named

    signer = UnsubscribeSigner(signing_key(session, settings)) if step.channel == "email" else None
    renderer = Renderer(
        settings.templates_dir,
        postal_address=settings.postal_address,
        public_url=settings.public_url,
        unsubscribe_signer=signer,
    )
    url = renderer.unsubscribe_url(participant.id) if step.channel == "email" else None
    context = message_context(participant, program, definition, step, unsubscribe_url=url)
    locale = participant.locale
    result = Preview(
        campaign=loaded.name,
        program=program.key,
        step=step.id,
        channel=step.channel,
        external_id=external_id,
        locale=locale,
        template=template,
        variant=chosen,
    )
    if at is not None:
        result.not_enrolled = not_enrolled(session, loaded, external_id, at, global_cap)
    result.channel_closed = channel_closed(session, participant, step.channel)
    if step.channel == "email":
        email = renderer.render_email(template, context, locale)
        result.email = {
            "subject": email.subject,
            "headers": email.headers,
            "text": email.text,
            "html": email.html,
            "template_id": email.template_id,
            "dynamic_template_data": email.dynamic_template_data,
        }
        if email.footer_added:
            result.notes.append(
                "the template lacks the unsubscribe link or postal address: "
                "the compliance footer was added"
            )
    elif step.channel == "sms":
        first_sms = next(s for s in definition.steps if s.channel == "sms")
        sms = renderer.render_sms(
            template,
            context,
            locale,
            first_in_campaign=first_sms is step,
            opt_out_notice=program.sms_opt_out_notice,
        )
        result.sms = {
            "body": sms.body,
            "encoding": sms.encoding,
            "segments": sms.segments,
            "characters": sms.characters,
        }
        if sms.notice_added:
            result.notes.append("first SMS of the campaign: the opt-out notice was added")
        warning = segment_warning(sms.segments, definition.sms_max_segments)
        if warning is not None:
            result.notes.append(warning)
    else:
        result.call = {
            "script": renderer.render_call_script(template, context, locale),
            "talking_points": list(step.talking_points),
            "offer": step.offer,
            "cross_sell": step.cross_sell,
        }
    return result


class _Member(NamedTuple):
    id: int
    participant_id: int
    email: str | None
    phone: str | None


def channel_closed(session: Session, participant: Participant, channel: str) -> str | None:
    """Why ``channel`` cannot reach the member now, in the sequencer's own words (the same
    consent, program default and suppression check), or None when it is open."""
    member = _Member(participant.id, participant.id, participant.email, participant.phone)
    closed = closed_channels_of(session.connection(), [member], {channel})
    reason = closed.get(participant.id, {}).get(channel)
    if reason is None:
        return None
    text = f"{channel} is closed for {participant.external_id}: {REASON_WORDS.get(reason, reason)}"
    if reason == "no_consent":
        text += f"; {how_to_state([channel])}"
    return text


ALREADY_ENROLLED = "already_enrolled"


def not_enrolled(
    session: Session,
    loaded: LoadedDefinition,
    external_id: str,
    at: datetime,
    global_cap: GlobalCap | None,
) -> str | None:
    """Why ``external_id`` would not be enrolled at ``at`` (plan/explain's own answer), or None."""
    from engine.planning import explain  # the planner is heavy; only preview --at needs it

    explanation = explain(session, loaded, external_id, at=at, global_cap=global_cap)
    first = next((check for check in explanation.exclusions if check.excluded), None)
    if explanation.group is not None or (first is not None and first.reason == ALREADY_ENROLLED):
        return None  # would be enrolled, or is in a live run of it already
    if not explanation.in_audience:
        return f"{external_id} is outside the audience: " + "; ".join(_failed(explanation.audience))
    return f"{external_id} would not be enrolled: {explanation.verdict}"


def _failed(node: ExplainNode) -> list[str]:
    """The innermost conditions that failed, with the member's values."""
    failed = [child for child in node.children if not child.passed]
    if failed:
        return [reason for child in failed for reason in _failed(child)]
    if node.children:  # a `not` whose inner condition held
        inner = node.children[0]
        return [f"not ({inner.condition}): {_actual(inner.actual)}"]
    return [f"{node.condition}: {_actual(node.actual)}"]


def _actual(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return "-" if value is None else str(value)


def segment_warning(segments: int, limit: int) -> str | None:
    if segments > limit:
        return f"{segments} segments: more than sms_max_segments ({limit})"
    return None


@dataclass(frozen=True)
class StepSmsSize:
    """One SMS step rendered for one member: what it costs in segments."""

    step: str
    external_id: str
    encoding: str | None
    characters: int | None
    segments: int | None
    warning: str | None


def sms_step_sizes(
    session: Session, loaded: LoadedDefinition, external_id: str, *, settings: Settings
) -> list[StepSmsSize]:
    """Every SMS step previewed for member ``external_id`` (their locale, variant and the
    program's opt-out notice): encoding, segments, and the warning past sms_max_segments."""
    sizes = []
    for step in loaded.definition.steps:
        if step.channel != "sms":
            continue
        try:
            sms = preview(session, loaded, step.id, external_id, settings=settings).sms
        except EngineError as exc:
            sizes.append(StepSmsSize(step.id, external_id, None, None, None, str(exc)))
            continue
        assert sms is not None
        warning = segment_warning(sms["segments"], loaded.definition.sms_max_segments)
        sizes.append(
            StepSmsSize(
                step.id, external_id, sms["encoding"], sms["characters"], sms["segments"], warning
            )
        )
    return sizes
