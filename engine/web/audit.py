"""The console's audit table and the sign-in rate limit that reads it.

Every sign-in, failed sign-in, sign-out, user change and role change is one row. The limit
counts the failed sign-ins of the last :data:`WINDOW` for the login and for the address, so
what the audit says and what the limit does cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from engine.clock import ensure_utc
from engine.db.models import ConsoleAuditEvent

SIGN_IN = "sign_in"
SIGN_IN_FAILED = "sign_in_failed"
SIGN_OUT = "sign_out"
USER_ADDED = "user_added"
USER_DISABLED = "user_disabled"
USER_ENABLED = "user_enabled"
PASSWORD_RESET = "password_reset"
ROLE_CHANGED = "role_changed"
IDENTITY_VERIFIED = "identity_verified"  # an agent recorded a member's verified identity

# Failed sign-ins within WINDOW after which a login (or an address, trying many logins) is
# refused until the oldest of them leaves the window, even with the right password.
WINDOW = timedelta(minutes=15)
MAX_FAILED_PER_LOGIN = 5
MAX_FAILED_PER_ADDRESS = 20


def record(
    session: Session,
    event: str,
    login: str,
    *,
    at: datetime,
    address: str | None = None,
    actor: str | None = None,
    detail: str | None = None,
) -> None:
    session.add(
        ConsoleAuditEvent(
            at=ensure_utc(at),
            event=event,
            login=login[:64],
            address=(address or None) and address[:64],
            actor=actor,
            detail=detail,
        )
    )
    session.flush()


@dataclass(frozen=True)
class Lockout:
    until: datetime
    reason: str  # "login" or "address"


def _failed_since(
    session: Session, column: InstrumentedAttribute[Any], value: str, since: datetime
) -> list[datetime]:
    return list(
        session.scalars(
            select(ConsoleAuditEvent.at)
            .where(
                column == value,
                ConsoleAuditEvent.event == SIGN_IN_FAILED,
                ConsoleAuditEvent.at > since,
            )
            .order_by(ConsoleAuditEvent.at)
        )
    )


def lockout(session: Session, login: str, address: str | None, *, at: datetime) -> Lockout | None:
    """Whether sign-in is refused now for this login or address, and until when."""
    at = ensure_utc(at)
    since = at - WINDOW
    checks: list[tuple[InstrumentedAttribute[Any], str | None, int, str]] = [
        (ConsoleAuditEvent.login, login, MAX_FAILED_PER_LOGIN, "login"),
        (ConsoleAuditEvent.address, address, MAX_FAILED_PER_ADDRESS, "address"),
    ]
    for column, value, limit, reason in checks:
        if not value:
            continue
        failed = _failed_since(session, column, value, since)
        if len(failed) >= limit:
            # Refused until enough of the failures have aged out of the window.
            return Lockout(until=failed[len(failed) - limit] + WINDOW, reason=reason)
    return None


@dataclass(frozen=True)
class AuditRow:
    at: datetime
    event: str
    login: str
    address: str | None
    actor: str | None
    detail: str | None


def recent(session: Session, *, login: str | None = None, limit: int = 50) -> list[AuditRow]:
    query = select(ConsoleAuditEvent).order_by(
        ConsoleAuditEvent.at.desc(), ConsoleAuditEvent.id.desc()
    )
    if login:
        query = query.where(ConsoleAuditEvent.login == login)
    return [
        AuditRow(e.at, e.event, e.login, e.address, e.actor, e.detail)
        for e in session.scalars(query.limit(limit))
    ]


def count(session: Session, event: str, login: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(ConsoleAuditEvent)
            .where(ConsoleAuditEvent.event == event, ConsoleAuditEvent.login == login)
        )
        or 0
    )
