"""Console users: who may sign in, with which role, and their argon2-hashed passwords.

An agent's user is linked to their row in ``agents`` (the same login), so the console serves
them their own queue; supervisors, managers and coordinators need no agent row. Every change
is in the audit table (engine/web/audit.py) and raises the user's session version, which signs
them out of every browser at once."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.clock import ensure_utc
from engine.db.models import CONSOLE_ROLES, Agent, ConsoleUser
from engine.errors import InputError, NotFoundError
from engine.web import audit

LOGIN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # argon2 hashes anything; a megabyte "password" is an attack

_hasher = PasswordHasher()
# Verified against when the login does not exist, so an unknown login costs the same time as
# a wrong password and the timing does not tell which logins exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class UserView:
    login: str
    role: str
    agent: str | None  # the linked agent's login
    active: bool
    created_at: datetime
    password_set_at: datetime


def _view(session: Session, user: ConsoleUser) -> UserView:
    agent = session.get(Agent, user.agent_id) if user.agent_id is not None else None
    return UserView(
        login=user.login,
        role=user.role,
        agent=agent.login if agent else None,
        active=user.active,
        created_at=user.created_at,
        password_set_at=user.password_set_at,
    )


def _check_role(role: str) -> str:
    role = role.strip().lower()
    if role not in CONSOLE_ROLES:
        raise InputError(f"role {role!r} is not one of {', '.join(CONSOLE_ROLES)}")
    return role


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InputError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InputError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    return password


def new_password() -> str:
    """A first password, printed once: 16 URL-safe characters (96 bits)."""
    return secrets.token_urlsafe(12)


def _agent_for(session: Session, login: str, role: str) -> Agent | None:
    agent = session.scalar(select(Agent).where(Agent.login == login))
    if role == "agent" and agent is None:
        raise NotFoundError(
            f"no agent {login!r}: an agent's console user is their agent row's login; "
            f"`campaign agents add {login} ...` first"
        )
    return agent if role == "agent" else None


def get_user(session: Session, login: str) -> ConsoleUser:
    user = session.scalar(select(ConsoleUser).where(ConsoleUser.login == login.strip().lower()))
    if user is None:
        raise NotFoundError(f"no console user {login!r} (see `campaign users list`)")
    return user


def add_user(
    session: Session,
    login: str,
    *,
    role: str,
    at: datetime,
    password: str | None = None,
    actor: str = "cli",
) -> tuple[UserView, str | None]:
    """Add a user; returns the user and the generated first password (None when given)."""
    login = login.strip().lower()
    if not LOGIN.match(login):
        raise InputError(
            f"login {login!r}: use lower-case letters, digits, '.', '_' or '-' (at most 64)"
        )
    role = _check_role(role)
    generated = None
    if password is None:
        password = generated = new_password()
    check_password(password)
    agent = _agent_for(session, login, role)
    at = ensure_utc(at)
    user = ConsoleUser(
        login=login,
        role=role,
        agent_id=agent.id if agent else None,
        password_hash=_hasher.hash(password),
        active=True,
        session_version=0,
        created_at=at,
        password_set_at=at,
    )
    try:
        with session.begin_nested():
            session.add(user)
            session.flush()
    except IntegrityError:
        raise InputError(f"console user {login!r} already exists") from None
    audit.record(session, audit.USER_ADDED, login, at=at, actor=actor, detail=f"role {role}")
    return _view(session, user), generated


def set_role(
    session: Session, login: str, role: str, *, at: datetime, actor: str = "cli"
) -> UserView:
    user = get_user(session, login)
    role = _check_role(role)
    if role == user.role:
        return _view(session, user)
    agent = _agent_for(session, user.login, role)
    before = user.role
    user.role, user.agent_id = role, agent.id if agent else None
    user.session_version += 1
    audit.record(
        session, audit.ROLE_CHANGED, user.login, at=at, actor=actor, detail=f"{before} -> {role}"
    )
    return _view(session, user)


def disable_user(session: Session, login: str, *, at: datetime, actor: str = "cli") -> UserView:
    user = get_user(session, login)
    if user.active:
        user.active = False
        user.session_version += 1
        audit.record(session, audit.USER_DISABLED, user.login, at=at, actor=actor)
    return _view(session, user)


def enable_user(session: Session, login: str, *, at: datetime, actor: str = "cli") -> UserView:
    user = get_user(session, login)
    if not user.active:
        user.active = True
        audit.record(session, audit.USER_ENABLED, user.login, at=at, actor=actor)
    return _view(session, user)


def reset_password(
    session: Session, login: str, *, at: datetime, password: str | None = None, actor: str = "cli"
) -> tuple[UserView, str | None]:
    user = get_user(session, login)
    generated = None
    if password is None:
        password = generated = new_password()
    check_password(password)
    user.password_hash = _hasher.hash(password)
    user.password_set_at = ensure_utc(at)
    user.session_version += 1
    audit.record(session, audit.PASSWORD_RESET, user.login, at=at, actor=actor)
    return _view(session, user), generated


def list_users(session: Session) -> list[UserView]:
    return [
        _view(session, u) for u in session.scalars(select(ConsoleUser).order_by(ConsoleUser.login))
    ]


class SignInRefused(InputError):
    """Wrong login or password, a disabled user, or too many failed sign-ins."""


WRONG = "wrong login or password"


def sign_in(
    session: Session, login: str, password: str, *, address: str | None, at: datetime
) -> ConsoleUser:
    """Check a sign-in and record it (success or failure, with why) in the audit table.
    The person is told only "wrong login or password" or that they must wait; the audit keeps
    the reason. Commit the session even when this raises: the failure must stay recorded."""
    login = login.strip().lower()[:64]
    at = ensure_utc(at)
    locked = audit.lockout(session, login, address, at=at)
    if locked is not None:
        audit.record(
            session,
            audit.SIGN_IN_FAILED,
            login,
            at=at,
            address=address,
            detail=f"locked ({locked.reason})",
        )
        raise SignInRefused(
            "too many failed sign-ins; try again after "
            f"{locked.until.strftime('%H:%M')} UTC or ask a supervisor"
        )
    user = session.scalar(select(ConsoleUser).where(ConsoleUser.login == login))
    reason: str | None = None
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password[:MAX_PASSWORD_LENGTH])
    except (VerificationError, InvalidHashError):
        reason = "wrong password"
    if user is None:
        reason = "unknown login"
    elif reason is None and not user.active:
        reason = "disabled"
    if reason is not None or user is None:
        audit.record(session, audit.SIGN_IN_FAILED, login, at=at, address=address, detail=reason)
        if reason == "disabled":
            raise SignInRefused("this user is disabled; ask a supervisor")
        raise SignInRefused(WRONG)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    audit.record(session, audit.SIGN_IN, login, at=at, address=address, detail=user.role)
    return user
