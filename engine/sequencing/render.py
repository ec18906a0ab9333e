"""Rendering one message's content, in the advance's process or a forked worker (the
content shapes are in the package docstring)."""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

import orjson

from engine.consent.unsubscribe import UnsubscribeSigner
from engine.errors import EngineError
from engine.sending.content_checks import check_content
from engine.templates import ParticipantData, Renderer, message_context


class RendererConfig(NamedTuple):
    """Everything a worker process needs to build its own Renderer (picklable)."""

    templates_dir: str
    postal_address: str
    public_url: str
    signing_key: bytes

    def build(self) -> Renderer:
        return Renderer(
            self.templates_dir,
            postal_address=self.postal_address,
            public_url=self.public_url,
            unsubscribe_signer=UnsubscribeSigner(self.signing_key),
        )


class RenderItem(NamedTuple):
    channel: str
    template: str
    locale: str | None
    participant: ParticipantData
    participant_id: int
    program: str
    campaign: str
    description: str
    step_id: str
    first_sms: bool
    # The program's sms_opt_out_notice: off, the first SMS goes without the opt-out sentence.
    opt_out_notice: bool = True
    # The step's sms_max_segments: a longer SMS is refused (over_segment_limit).
    max_segments: int | None = None


# (content as JSON text, None) or (None, error message)
Rendered = tuple[str | None, str | None]


def render_item(renderer: Renderer, item: RenderItem) -> Rendered:
    """One message's content (the shapes in the module docstring) as compact JSON."""
    try:
        url = renderer.unsubscribe_url(item.participant_id) if item.channel == "email" else None
        context = message_context(
            item.participant,
            item.program,
            {"name": item.campaign, "description": item.description},
            {"id": item.step_id},
            unsubscribe_url=url,
        )
        content: dict[str, Any]
        if item.channel == "email":
            email = renderer.render_email(item.template, context, item.locale)
            if email.template_id is not None:
                content = {
                    "template_id": email.template_id,
                    "dynamic_template_data": email.dynamic_template_data,
                    "headers": email.headers,
                }
            else:
                content = {
                    "subject": email.subject,
                    "html": email.html,
                    "text": email.text,
                    "headers": email.headers,
                }
        else:
            sms = renderer.render_sms(
                item.template,
                context,
                item.locale,
                first_in_campaign=item.first_sms,
                opt_out_notice=item.opt_out_notice,
            )
            content = {"body": sms.body, "encoding": sms.encoding, "segments": sms.segments}
        check_content(item.channel, content, item.max_segments)
    except EngineError as exc:
        return None, str(exc)
    return content_json(content), None


def content_json(content: dict[str, Any]) -> str:
    """Compact JSON text of a message's content. orjson is five times faster than json.dumps
    here (a large step writes a million of these); json.dumps takes what orjson refuses
    (an integer past 64 bits from an imported attribute)."""
    try:
        return orjson.dumps(content).decode()
    except TypeError:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":"))


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 4))
