"""Content a provider would refuse (issue #16), checked by the sequencer per member before a
message is queued: the member's message is made ``skipped`` with the reason instead of being
sent, rejected and counted as a provider failure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import EngineError
from engine.templates import SMS_MAX_CHARACTERS, SMS_MAX_SEGMENTS

# Content a provider would refuse: the member's message is skipped with this reason.
REFUSALS = ("empty_subject", "empty_body", "sms_too_long", "over_segment_limit")
# More render errors than this share of one step's members in a batch (and at least
# RENDER_ERROR_MIN) pause the run instead of skipping them all.
RENDER_ERROR_SHARE = 0.05
RENDER_ERROR_MIN = 5


class ContentRefused(EngineError):
    """Rendered content a provider would refuse; ``reason`` is one of REFUSALS."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


def refusal_of(error: str | None) -> str:
    """The skip reason of a failed render: a content refusal, else ``render_error``."""
    head = (error or "").split(":", 1)[0]
    return head if head in REFUSALS else "render_error"


def check_content(channel: str, content: Mapping[str, Any], max_segments: int | None) -> None:
    """Raise ContentRefused for content a provider would refuse (or the step forbids)."""
    if channel == "email":
        if "template_id" not in content and not str(content.get("subject") or "").strip():
            raise ContentRefused("empty_subject", "the subject renders empty")
        return
    body = str(content.get("body") or "")
    segments = int(content.get("segments") or 0)
    if not body.strip():
        raise ContentRefused("empty_body", "the SMS renders empty")
    if len(body) > SMS_MAX_CHARACTERS or segments > SMS_MAX_SEGMENTS:
        raise ContentRefused(
            "sms_too_long",
            f"{len(body)} characters, {segments} segments (Twilio takes at most "
            f"{SMS_MAX_CHARACTERS} characters)",
        )
    if max_segments is not None and segments > max_segments:
        raise ContentRefused(
            "over_segment_limit", f"{segments} segments; the step allows {max_segments}"
        )


__all__ = [
    "REFUSALS",
    "RENDER_ERROR_MIN",
    "RENDER_ERROR_SHARE",
    "ContentRefused",
    "check_content",
    "refusal_of",
]
