"""What a provider's answer sets off beyond its own message's outcome.

An outage (:class:`RetryableError`) opens the circuit of the channel's provider and sender
(:func:`trip_circuit`; engine/sending/circuits.py) and the first success closes it
(:func:`close_circuit`); a campaign refusal, or ``dispatch_pause_after_failures`` provider
failures in a row (:func:`failure_streak`, :func:`counts_as_failure`), pause the run
(:func:`auto_pause`); a recipient who opted out or whose address is invalid is suppressed
(:func:`suppress_address`).
"""

from __future__ import annotations

import logging

from sqlalchemy import func, select

from engine.channels.base import (
    CampaignStopError,
    Channel,
    ChannelError,
    DuplicateSendError,
    MessageError,
    RecipientError,
    RetryableError,
)
from engine.consent.suppressions import add_suppression
from engine.db.models import CampaignRun, OutboxMessage
from engine.errors import EngineError, InputError
from engine.metrics import recording as metrics
from engine.sending import circuits
from engine.sending.circuits import Circuit, circuit_of
from engine.sending.shared import Shared, now, writing

log = logging.getLogger(__name__)


def trip_circuit(shared: Shared, channel: Channel, kind: str, error: RetryableError) -> Circuit:
    """Open (or keep open) the circuit of ``kind``'s provider and sender after ``error``."""
    with writing(shared), shared.app.sessions() as session, session.begin():
        circuit = circuits.trip(
            session,
            shared.circuit_keys[kind],
            channel=kind,
            provider=channel.name,
            at=now(shared),
            error=str(error),
            base=shared.settings.dispatch_retry_delay,
            retry_after=error.retry_after,
        )
    log.warning("%s", circuit.describe(), extra={"channel": kind, "provider": channel.name})
    return circuit


def close_circuit(shared: Shared, kind: str) -> None:
    """Close ``kind``'s circuit (a request succeeded), counting an attempt for the message
    that alone failed while it was open, if any (engine/sending/circuits.py ``strike_suspects``)."""
    with writing(shared), shared.app.sessions() as session, session.begin():
        circuit = circuit_of(session, shared.circuit_keys[kind])
        if circuits.close(session, shared.circuit_keys[kind]):
            log.warning(
                "%s: the provider answers again; sending resumes", kind, extra={"channel": kind}
            )
        if circuit is not None:
            circuits.strike_suspects(
                session, circuit, now(shared), max_attempts=shared.settings.dispatch_max_attempts
            )


def auto_pause(shared: Shared, run_id: int, reason: str) -> None:
    from engine.runs import pause_run

    with shared.lock:
        if run_id in shared.paused:
            return
        shared.paused.add(run_id)
    try:
        with writing(shared), shared.app.sessions() as session, session.begin():
            pause_run(session, run_id, at=now(shared), reason=reason[:1000])
        log.warning("run %s paused: %s", run_id, reason, extra={"run_id": run_id})
        metrics.auto_paused(shared.app.metrics, "dispatcher")
    except InputError as exc:
        with shared.app.sessions() as session:
            status = session.scalar(select(CampaignRun.status).where(CampaignRun.id == run_id))
        if status == "cancelled":
            return  # cancelled meanwhile: its queued messages are skipped
        if status != "paused":  # (paused meanwhile is what we wanted)
            log.error("run %s could not be paused (%s): %s", run_id, reason, exc)
            with shared.lock:
                shared.summary.errors.append(
                    f"run {run_id} could not be paused ({reason}): {exc}; the dispatcher "
                    "stopped: pause or cancel the run, or fix the provider, then dispatch again"
                )
                shared.pause_failed = True
            return
    with shared.lock:
        if run_id not in shared.summary.paused_runs:
            shared.summary.paused_runs.append(run_id)


def suppress_address(shared: Shared, channel: str, address: str, error: RecipientError) -> None:
    reason = "opt_out" if error.suppress else "invalid"
    try:
        with writing(shared), shared.app.sessions() as session, session.begin():
            add_suppression(
                session,
                address,
                channel,
                reason,
                "provider",
                note=str(error)[:500],
                at=now(shared),
                default_region=shared.settings.default_region,
            )
    except EngineError as exc:
        log.warning("could not suppress %s on %s: %s", address, channel, exc)


# status_reason of an attempt that failed on the provider's side (see counts_as_failure).
FAILURE_REASONS = ("retry", "too_many_attempts", "no_answer", "rejected", "unexpected_error")


def failure_streak(shared: Shared, run_id: int) -> int:
    """Failed attempts of the run since its last message went, as recorded by earlier
    dispatches: a retried row's ``attempts`` are its failures (it would be sent otherwise)."""
    with shared.app.sessions() as session:
        last_sent = session.scalar(
            select(func.max(OutboxMessage.sent_at)).where(OutboxMessage.run_id == run_id)
        )
        query = select(func.coalesce(func.sum(OutboxMessage.attempts), 0)).where(
            OutboxMessage.run_id == run_id,
            OutboxMessage.sent_at.is_(None),
            OutboxMessage.status_reason.in_(FAILURE_REASONS),
        )
        if last_sent is not None:
            query = query.where(OutboxMessage.updated_at > last_sent)
        return int(session.scalar(query) or 0)


def counts_as_failure(error: ChannelError) -> bool:
    """A provider failure for the auto-pause count. Not: a refusal of the message or the
    recipient (the provider works), an outage (its circuit waits it out: no message is spent
    on it), a stop (it pauses the run itself)."""
    return not isinstance(
        error,
        RecipientError | MessageError | CampaignStopError | DuplicateSendError | RetryableError,
    )
