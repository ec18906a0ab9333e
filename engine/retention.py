"""Message contents are kept only as long as they are useful: the tick empties the rendered
content and the address of every message older than ``CAMPAIGN_MESSAGE_RETENTION_DAYS``
(default 90) once it has reached a settled state, keeping the row (status, times, campaign,
step, variant), so every report's counts stay as they were.

Data minimisation (GDPR Art. 5(1)(c) and (e)): a rendered email is a copy of the member's name,
points and offer; after the provider events that follow a send have come in (a few days) it
serves nobody. A message still queued, sending or of unknown fate keeps what it needs to be
sent or settled. Work is chunked so one tick never holds a long transaction: what is left
waits for the next tick; a partial index (migrations 0021, 0035) finds only settled messages
not yet purged.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Select, null, select, text, update
from sqlalchemy.orm import Session

from engine.db.models import OutboxMessage
from engine.db.tables.outbox import UNPURGED

PURGE_CHUNK = 5_000


def purgeable(cutoff: datetime, limit: int) -> Select[int]:
    """The ids of up to ``limit`` settled messages created before ``cutoff`` whose content is
    still there, oldest first."""
    return (
        select(OutboxMessage.id)
        .where(
            # The partial index's own condition, as literal SQL (0035): both databases then
            # read that index in created_at order, and only rows it holds qualify.
            text(UNPURGED),
            OutboxMessage.created_at < cutoff,
        )
        .order_by(OutboxMessage.created_at)
        .limit(limit)
    )


def purge_message_contents(
    session: Session, *, at: datetime, keep_days: int, limit: int = PURGE_CHUNK
) -> int:
    """Empty content and address of up to ``limit`` settled messages created before
    ``at - keep_days``; returns how many (the caller owns the transaction)."""
    ids = purgeable(at - timedelta(days=keep_days), limit).scalar_subquery()
    result = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids))
        .values(to_address=null(), content={})
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
