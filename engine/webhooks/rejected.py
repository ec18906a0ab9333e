"""Webhook events that cannot be stored: found one by one, kept with the reason.

A provider sends events in batches and retries a batch that was not answered 2xx (SendGrid:
for a day). So one event that the database cannot take (a lone surrogate such as
``\\ud800``, which is not Unicode text; a number of thousands of digits, which Python will
not even turn into text) must not fail the request: it is set aside here, in
``rejected_webhook_events`` with the reason, and the good events of the batch are applied.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine.db.models import RejectedWebhookEvent

# More digits than any id, amount or timestamp has; int() of 4,300+ digits raises.
MAX_DIGITS = 64
PAYLOAD_MAX = 16 * 1024
REASON_MAX = 1000


class HugeNumber:
    """What ``load_json`` makes of an integer of more than MAX_DIGITS digits."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"<a number of {self.digits} digits>"


def _parse_int(literal: str) -> int | HugeNumber:
    digits = len(literal.lstrip("-"))
    return int(literal) if digits <= MAX_DIGITS else HugeNumber(digits)


def load_json(body: bytes) -> Any:
    """A request body as JSON, where an absurdly long integer becomes a HugeNumber (so that
    only its own event is rejected) instead of failing the whole body. Raises ValueError
    (or UnicodeDecodeError, RecursionError) when the body is not JSON at all."""
    return json.loads(body, parse_int=_parse_int)


def problem(value: Any) -> str | None:
    """Why a parsed event cannot be stored, naming where (``reason``, ``detail.note``), or
    None. Looks at everything in it, keys too, without recursion (nesting is as deep as
    the JSON parser allowed)."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        at = f"{where}: " if where else ""
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return f"{at}contains text that is not valid Unicode: {ascii(item)[:80]}"
        elif isinstance(item, HugeNumber):
            return f"{at}contains a number of {item.digits} digits"
        elif isinstance(item, dict):
            for key, inner in item.items():
                path = f"{where}.{ascii(key)[1:-1]}" if where else ascii(key)[1:-1]
                stack.append((path, key))
                stack.append((path, inner))
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", inner) for i, inner in enumerate(item))
    return None


@functools.cache
def _insert(dialect: str) -> Insert:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(RejectedWebhookEvent).on_conflict_do_nothing(
        index_elements=["source", "payload_digest"]
    )


def record_rejected(
    session: Session, source: str, rejected: Sequence[tuple[str, Any]], *, at: datetime
) -> None:
    """Keep (reason, event) pairs in the caller's transaction; a replay adds nothing."""
    if not rejected:
        return
    rows: dict[str, dict[str, Any]] = {}
    for reason, event in rejected:
        # ensure_ascii: a lone surrogate is kept as its \\u escape, which any column takes.
        payload = json.dumps(event, ensure_ascii=True, default=repr, sort_keys=True)
        digest = hashlib.sha256(f"{reason}\x1e{payload}".encode()).hexdigest()
        rows[digest] = {
            "source": source,
            "reason": reason.replace("\x00", "")[:REASON_MAX],
            "payload": payload[:PAYLOAD_MAX],
            "payload_digest": digest,
            "received_at": at,
        }
    session.execute(_insert(session.get_bind().dialect.name), list(rows.values()))


def list_rejected(
    session: Session, *, source: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """The most recent rejected webhook events, newest first (``campaign events rejected``)."""
    query = select(RejectedWebhookEvent).order_by(RejectedWebhookEvent.id.desc()).limit(limit)
    if source is not None:
        query = query.where(RejectedWebhookEvent.source == source)
    return [
        {
            "received_at": row.received_at,
            "source": row.source,
            "reason": row.reason,
            "payload": row.payload,
        }
        for row in session.scalars(query)
    ]


__all__ = ["HugeNumber", "list_rejected", "load_json", "problem", "record_rejected"]
