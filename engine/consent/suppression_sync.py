"""``campaign suppressions sync``: SendGrid's suppression lists pulled into ours, for deployments
that cannot expose a webhook (or to catch up after one was down).

Three lists, through the official SDK (``SendGridAPIClient(api_key, host=...)``):

    GET /v3/suppression/bounces       -> email suppression 'bounce'
    GET /v3/suppression/spam_reports  -> email suppression 'spam_report'
    GET /v3/suppression/unsubscribes  -> email suppression 'opt_out' (global unsubscribes)

each paged with ``limit``/``offset`` and bounded by ``start_time``/``end_time`` (unix seconds,
inclusive). Without ``since`` a sync starts where the last successful one ended (kept in
engine_settings), so a daily cron pulls only what is new; the first sync pulls everything. An
address already suppressed on email (or on all channels), for any reason, is left as it is:
a sync never weakens an erasure or rewrites why someone was suppressed. Every address added
goes through :func:`engine.consent.opt_outs.suppress`, so its queued email is skipped at once.
"""

from __future__ import annotations

import json
import urllib.error
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine.app import App
from engine.clock import ensure_utc
from engine.consent.opt_outs import existing_reason, suppress
from engine.consent.suppressions import normalise_address
from engine.db.models import EngineSetting
from engine.db.session import writing
from engine.definitions.durations import parse_duration
from engine.errors import ConfigError, EngineError, InputError

SOURCE = "sendgrid_sync"
CURSOR_KEY = "sendgrid_suppressions_synced_until"
LISTS = (("bounces", "bounce"), ("spam_reports", "spam_report"), ("unsubscribes", "opt_out"))
PAGE_SIZE = 500
TIMEOUT_SECONDS = 30.0


class SuppressionSyncError(EngineError):
    """SendGrid could not be asked (refused, unreachable, answered nonsense)."""


@dataclass
class ListCounts:
    fetched: int = 0
    added: int = 0
    already: int = 0
    invalid: int = 0


@dataclass
class SyncSummary:
    since: datetime | None
    until: datetime
    lists: dict[str, ListCounts] = field(default_factory=dict)
    skipped_messages: int = 0

    @property
    def added(self) -> int:
        return sum(counts.added for counts in self.lists.values())


def parse_since(value: str, *, now: datetime) -> datetime:
    """``--since``: an ISO 8601 date or time (UTC when it has no offset) or a duration back
    from now ('7d', '36h')."""
    text = value.strip()
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            f"--since {value!r}: use an ISO 8601 date or time (2026-03-01, "
            "2026-03-01T08:00:00Z) or a duration back from now (7d, 36h)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return ensure_utc(parsed)


def sync_suppressions(
    app: App, *, since: datetime | str | None = None, page_size: int = PAGE_SIZE
) -> SyncSummary:
    """Pull the three lists and apply them; see the module docstring. ``since`` as text is
    read by :func:`parse_since`."""
    settings = app.settings
    if not settings.sendgrid_api_key:
        raise ConfigError("SENDGRID_API_KEY is not set: there is no SendGrid account to sync from")
    until = app.clock.now()
    if isinstance(since, str):
        since = parse_since(since, now=until)
    client = SendGridAPIClient(settings.sendgrid_api_key, host=settings.sendgrid_host)
    if since is None:
        with app.sessions() as session:
            since = _stored_cursor(session)
    summary = SyncSummary(since=since, until=until)
    for name, reason in LISTS:
        counts = summary.lists.setdefault(name, ListCounts())
        offset = 0
        while True:
            rows = _fetch(client, name, since, until, limit=page_size, offset=offset)
            counts.fetched += len(rows)
            with writing(app.sessions) as session:
                summary.skipped_messages += _apply(
                    session, rows, reason, counts, at=until, region=settings.default_region
                )
            if len(rows) < page_size:
                break
            offset += page_size
    with app.sessions() as session, session.begin():
        _store_cursor(session, until)
    return summary


def _fetch(
    client: SendGridAPIClient,
    name: str,
    since: datetime | None,
    until: datetime,
    *,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    params: dict[str, int] = {
        "limit": limit,
        "offset": offset,
        "end_time": int(until.timestamp()),
    }
    if since is not None:
        params["start_time"] = int(since.timestamp())
    endpoint = getattr(client.client.suppression, name)
    try:
        response = endpoint.get(query_params=params, timeout=TIMEOUT_SECONDS)
    except HTTPError as exc:
        status = getattr(exc, "status_code", None)
        detail = _error_detail(getattr(exc, "body", b""))
        if status in (401, 403):
            raise ConfigError(
                f"SendGrid refused the API key for /v3/suppression/{name} ({status}): {detail}; "
                "it needs the 'Suppressions' read scope"
            ) from None
        raise SuppressionSyncError(
            f"SendGrid answered {status} for /v3/suppression/{name}: {detail}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise SuppressionSyncError(
            f"SendGrid at {client.host} could not be reached: {getattr(exc, 'reason', exc)}"
        ) from None
    try:
        rows = json.loads(response.body or b"[]")
    except (ValueError, UnicodeDecodeError):
        rows = None
    if not isinstance(rows, list):
        raise SuppressionSyncError(
            f"SendGrid's /v3/suppression/{name} answer is not a JSON list of entries"
        )
    return [row for row in rows if isinstance(row, dict)]


def _error_detail(body: Any) -> str:
    try:
        errors = json.loads(body).get("errors") or []
        return "; ".join(str(e.get("message", e)) for e in errors) or "no detail"
    except (ValueError, AttributeError, TypeError):
        return "no detail"


def _apply(
    session: Session,
    rows: list[dict[str, Any]],
    reason: str,
    counts: ListCounts,
    *,
    at: datetime,
    region: str,
) -> int:
    skipped = 0
    for row in rows:
        email = row.get("email")
        if not isinstance(email, str):
            counts.invalid += 1
            continue
        try:
            normalised = normalise_address(email, default_region=region)
        except InputError:
            counts.invalid += 1
            continue
        if "@" not in normalised:
            counts.invalid += 1
            continue
        if existing_reason(session, normalised, ("email", "all")) is not None:
            counts.already += 1
            continue
        note = row.get("reason") if isinstance(row.get("reason"), str) else None
        result = suppress(session, email, "email", reason, SOURCE, at=at, note=note)
        counts.added += 1
        skipped += result.skipped_messages
    return skipped


def _stored_cursor(session: Session) -> datetime | None:
    value = session.scalar(select(EngineSetting.value).where(EngineSetting.key == CURSOR_KEY))
    if value is None:
        return None
    try:
        return ensure_utc(datetime.fromisoformat(value))
    except ValueError:
        return None


def _store_cursor(session: Session, until: datetime) -> None:
    # One second of overlap: end_time is inclusive, and an entry stamped in the second the
    # last sync ran might not have been listed yet. Re-reading it finds it already there.
    value = (until - timedelta(seconds=1)).isoformat()
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(EngineSetting).values(key=CURSOR_KEY, value=value)
    session.execute(statement.on_conflict_do_update(index_elements=["key"], set_={"value": value}))


__all__ = [
    "SuppressionSyncError",
    "SyncSummary",
    "parse_since",
    "sync_suppressions",
]
