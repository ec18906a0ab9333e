"""Circuit breakers: a provider that is down makes its channel wait, not its messages fail.

An error that is the provider's (no connection, 5xx, 429, a connect timeout: everything
classified :class:`engine.channels.base.RetryableError`) says nothing about the message, so it
spends none of the message's attempts. It opens the circuit of that provider and sender
(one ``provider_circuits`` row, keyed like the rate limits: engine/sending/sender_limits.py): no
dispatcher claims for that channel until ``retry_at``; then one request probes. A probe that
fails doubles the wait (up to :data:`MAX_WAIT`; a Retry-After or SendGrid's X-RateLimit-Reset
is honoured when longer); one that succeeds closes the circuit (deletes the row).

The row lives in the database so that every dispatcher, on any machine, and each cron tick,
sees it, and `dispatch`/`tick` can say "waiting for sendgrid since 21:04".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from engine.clock import ensure_utc
from engine.db.models import OutboxMessage, ProviderCircuit

# The longest wait between two probes of a provider that stays down.
MAX_WAIT = timedelta(minutes=10)


@dataclass(frozen=True)
class Circuit:
    """An open circuit (see the module docstring), as reported by dispatch and tick."""

    key: str
    channel: str
    provider: str
    opened_at: datetime
    retry_at: datetime
    failures: int
    last_error: str | None

    def describe(self) -> str:
        return (
            f"{self.channel}: waiting for {self.provider} since {self.opened_at:%Y-%m-%d %H:%M:%S} "
            f"UTC (next try at {self.retry_at:%H:%M:%S}, {self.failures} failed "
            f"attempt(s); last: {self.last_error or '?'})"
        )


def wait_after(failures: int, base: timedelta, retry_after: float | None) -> timedelta:
    """How long to wait before the next probe after ``failures`` failed in a row: ``base``
    doubled each time up to :data:`MAX_WAIT`, never shorter than what the provider asked."""
    wait = min(base * (2 ** max(0, failures - 1)), MAX_WAIT)
    if retry_after is not None:
        wait = max(wait, timedelta(seconds=retry_after))
    return wait


def _view(row: ProviderCircuit) -> Circuit:
    return Circuit(
        row.key,
        row.channel,
        row.provider,
        ensure_utc(row.opened_at),
        ensure_utc(row.retry_at),
        row.failures,
        row.last_error,
    )


def circuit_of(session: Session, key: str) -> Circuit | None:
    """The open circuit of ``key`` (one primary-key read), or None when it is closed."""
    row = session.get(ProviderCircuit, key)
    return None if row is None else _view(row)


def open_circuits(session: Session) -> list[Circuit]:
    """Every open circuit, oldest first."""
    rows = session.scalars(select(ProviderCircuit).order_by(ProviderCircuit.opened_at))
    return [_view(row) for row in rows]


def trip(
    session: Session,
    key: str,
    *,
    channel: str,
    provider: str,
    at: datetime,
    error: str,
    base: timedelta,
    retry_after: float | None,
) -> Circuit:
    """Record a provider failure on ``key``: open its circuit, or count one more failed probe.
    A failure that comes back while the circuit already waits (another request of the same
    moment, another dispatcher's) only ever moves ``retry_at`` later, never counts twice."""
    at = ensure_utc(at)
    opening = dict(
        key=key,
        channel=channel,
        provider=provider[:32],
        opened_at=at,
        retry_at=at + wait_after(1, base, retry_after),
        failures=1,
        last_error=error[:2000],
    )
    # Two dispatchers may open it at once: the second one's insert does nothing.
    dialect = session.get_bind().dialect.name
    upsert = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(ProviderCircuit)
    created = session.scalar(
        upsert.values(**opening)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(ProviderCircuit.key)
    )
    row = session.get(ProviderCircuit, key, with_for_update=True, populate_existing=True)
    assert row is not None
    if created is not None:
        return _view(row)
    if ensure_utc(row.retry_at) <= at:  # a probe that failed
        row.failures += 1
        row.retry_at = at + wait_after(row.failures, base, retry_after)
    else:
        later = at + wait_after(row.failures, base, retry_after)
        if later > ensure_utc(row.retry_at):
            row.retry_at = later
    row.last_error = error[:2000]
    session.flush()
    return _view(row)


def close(session: Session, key: str) -> bool:
    """The provider answered: close ``key``'s circuit. True when it was open."""
    result = session.execute(delete(ProviderCircuit).where(ProviderCircuit.key == key))
    return bool(getattr(result, "rowcount", 0))


# status_reason of a message whose request failed on the provider's side (no connection, 5xx;
# not a 429): it went back to the queue with no attempt spent.
PROVIDER_UNAVAILABLE = "provider_unavailable"


def strike_suspects(session: Session, circuit: Circuit, at: datetime, *, max_attempts: int) -> int:
    """The provider answered another message when ``circuit`` (open) was first probed: if
    one message alone failed while it was open (still queued as ``provider_unavailable``),
    the provider may fail on it alone (a poison message, whose every try would open the
    circuit again): count it one attempt; one that has failed ``max_attempts`` times so ends
    ``failed`` (``too_many_attempts``; ``campaign outbox requeue`` can queue it again). An
    outage (a failed probe, or several messages failing) counts nothing: it is the
    provider's. Returns how many were counted (0 or 1)."""
    if circuit.failures > 1:
        return 0
    suspects = session.scalars(
        select(OutboxMessage.id)
        .where(
            OutboxMessage.status == "queued",
            OutboxMessage.not_before >= circuit.opened_at,  # each went back until a probe
            OutboxMessage.channel == circuit.channel,
            OutboxMessage.status_reason == PROVIDER_UNAVAILABLE,
            OutboxMessage.updated_at >= circuit.opened_at,
        )
        .limit(2)
    ).all()
    if len(suspects) != 1:
        return 0
    struck = OutboxMessage.attempts + 1
    result = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == suspects[0], OutboxMessage.status == "queued")
        .values(
            attempts=struck,
            status=case((struck >= max_attempts, "failed"), else_=OutboxMessage.status),
            status_reason=case(
                (struck >= max_attempts, "too_many_attempts"), else_=OutboxMessage.status_reason
            ),
            updated_at=at,
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


__all__ = [
    "MAX_WAIT",
    "PROVIDER_UNAVAILABLE",
    "Circuit",
    "circuit_of",
    "close",
    "open_circuits",
    "strike_suspects",
    "trip",
    "wait_after",
]
