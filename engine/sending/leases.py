"""Leases of dead dispatchers, and the heartbeat that tells the living from the dead.

A dispatcher moves the ``heartbeat_at`` of its claims on every :data:`HEARTBEAT_SECONDS`; a
claim whose lease ran out, or whose heartbeat is older than :data:`HEARTBEAT_GRACE`, is a dead
dispatcher's: :func:`housekeeping` (run by every dispatcher as it starts, then every
:data:`HOUSEKEEPING_SECONDS` on its heartbeat thread, and by an idle worker in follow mode)
puts the rows of a group never handed off back to the queue (nothing of them went) and marks
the others ``unknown`` (they may have gone). It also skips the queued messages of cancelled
runs and drops claims that are over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, or_, select, update

from engine.db.models import CampaignRun, DispatchClaim, OutboxMessage
from engine.metrics.names import DISPATCHER
from engine.sending import outbox_status as st
from engine.sending.record import CLAIMED, LAPSED
from engine.sending.shared import Shared, is_postgres, now, rowcount, writing

log = logging.getLogger(__name__)

# A live dispatcher moves the heartbeat of its claims on this often; a claim whose heartbeat
# is older than HEARTBEAT_GRACE is a dead dispatcher's, settled as if its lease had run out
# (the lease, CAMPAIGN_DISPATCH_LEASE, stays the longest a claim lives). The same thread runs
# the housekeeping every HOUSEKEEPING_SECONDS, so a busy dispatcher notices a dead one too.
HEARTBEAT_SECONDS = 10.0
HEARTBEAT_GRACE = timedelta(seconds=60)
HOUSEKEEPING_SECONDS = 60.0


def housekeeping(shared: Shared) -> tuple[int, int, int]:
    """Expired leases: rows of a claim never handed off -> queued, the others -> unknown;
    queued messages of cancelled runs -> skipped; claims none of whose rows is ``sending``
    any more -> dropped. Returns (unknown, queued again, skipped).

    On PostgreSQL every lock is taken with SKIP LOCKED, so that two dispatchers starting at
    once never wait for each other (nor deadlock); a row or claim one of them skips is another
    one's to settle, or the next housekeeping's. A lapse skipped that way leaves its rows to the
    ``unknown`` step: the safe side."""
    at = now(shared)
    with writing(shared), shared.app.sessions() as session, session.begin():
        postgres = is_postgres(session)
        # A lease that ran out, or a claim whose dispatcher stopped beating (it died).
        dead = select(DispatchClaim.id).where(DispatchClaim.heartbeat_at < at - HEARTBEAT_GRACE)
        expired = (
            OutboxMessage.status == st.SENDING,
            or_(OutboxMessage.claimed_until < at, OutboxMessage.claim_id.in_(dead)),
        )
        # Claims whose lease ran out before their hand-off will never send (a hand-off refuses
        # a lapsed claim): their rows can go back to the queue.
        lapsing = select(DispatchClaim.id).where(
            DispatchClaim.state == CLAIMED,
            DispatchClaim.id.in_(select(OutboxMessage.claim_id).where(*expired)),
        )
        if postgres:
            lapsing = lapsing.with_for_update(skip_locked=True)
        session.execute(
            update(DispatchClaim)
            .where(DispatchClaim.id.in_(lapsing.scalar_subquery()), DispatchClaim.state == CLAIMED)
            .values(state=LAPSED)
            .execution_options(synchronize_session=False)
        )
        never_sent = (
            select(OutboxMessage.id)
            .join(DispatchClaim, DispatchClaim.id == OutboxMessage.claim_id)
            .where(*expired, DispatchClaim.state == LAPSED)
        )
        if postgres:
            never_sent = never_sent.with_for_update(of=OutboxMessage, skip_locked=True)
        requeued = session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(never_sent.scalar_subquery()))
            .values(
                status=st.QUEUED,
                status_reason="released: its lease ran out before its dispatcher began to send it",
                claimed_by=None,
                claimed_until=None,
                updated_at=at,
            )
            .execution_options(synchronize_session=False)
        )
        # The rest were handed off (or their claim is missing): they may have gone.
        lost_ids = select(OutboxMessage.id).where(*expired)
        if postgres:
            lost_ids = lost_ids.with_for_update(skip_locked=True)
        lost = session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(lost_ids.scalar_subquery()))
            .values(
                status=st.UNKNOWN,
                status_reason="lease expired: the dispatcher stopped while sending; it may "
                "have gone (see `campaign outbox unknown`)",
                updated_at=at,
            )
            .execution_options(synchronize_session=False)
        )
        cancelled = (
            select(OutboxMessage.id)
            .join(CampaignRun, CampaignRun.id == OutboxMessage.run_id)
            .where(OutboxMessage.status == st.QUEUED, CampaignRun.status == "cancelled")
        )
        if postgres:
            cancelled = cancelled.with_for_update(of=OutboxMessage, skip_locked=True)
        skipped = session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(cancelled.scalar_subquery()))
            .values(status=st.SKIPPED, status_reason="run_cancelled", updated_at=at)
            .execution_options(synchronize_session=False)
        )
        # A claim none of whose rows is sending is over: each row left `sending` for good
        # (only a new claim, with a new id, makes a row `sending` again).
        done = select(DispatchClaim.id).where(
            DispatchClaim.id.not_in(
                select(OutboxMessage.claim_id).where(
                    OutboxMessage.status == st.SENDING, OutboxMessage.claim_id.is_not(None)
                )
            )
        )
        if postgres:
            done = done.with_for_update(skip_locked=True)
        session.execute(
            delete(DispatchClaim)
            .where(DispatchClaim.id.in_(done.scalar_subquery()))
            .execution_options(synchronize_session=False)
        )
    return rowcount(lost), rowcount(requeued), rowcount(skipped)


def _beat(shared: Shared, workers: Sequence[str]) -> None:
    """Move on the heartbeat of the claims that ``workers`` hold (rows still ``sending``)."""
    with writing(shared), shared.app.sessions() as session, session.begin():
        mine = select(OutboxMessage.claim_id).where(
            OutboxMessage.status == st.SENDING, OutboxMessage.claimed_by.in_(workers)
        )
        session.execute(
            update(DispatchClaim)
            .where(DispatchClaim.id.in_(mine))
            .values(heartbeat_at=now(shared))
            .execution_options(synchronize_session=False)
        )


def _alive(shared: Shared) -> None:
    """Tell /metrics this dispatcher lives, and save what it counted (engine/metrics)."""
    shared.app.metrics.beat(DISPATCHER, now(shared))
    with writing(shared):
        shared.app.metrics.flush(shared.app.engine)


def heartbeat(shared: Shared, workers: Sequence[str], done: threading.Event) -> None:
    """The heartbeat thread of one dispatch() (see HEARTBEAT_SECONDS)."""
    last_housekeeping = time.monotonic()
    _alive(shared)
    while not done.wait(HEARTBEAT_SECONDS):
        _alive(shared)
        try:
            _beat(shared, workers)
            if time.monotonic() - last_housekeeping >= HOUSEKEEPING_SECONDS:
                last_housekeeping = time.monotonic()
                expired, requeued, cancelled = housekeeping(shared)
                with shared.lock:
                    shared.summary.expired_leases += expired
                    shared.summary.requeued_leases += requeued
                    shared.summary.cancelled_skipped += cancelled
        except Exception:  # the next beat tries again; sending goes on meanwhile
            log.exception("dispatch: heartbeat failed")
    _alive(shared)
