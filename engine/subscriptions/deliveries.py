"""Deliver report subscriptions: due fires become delivery rows, rows are claimed and sent
through the email channel, failures are retried with backoff and listed.

Overlap safety is the campaign launches' (engine/schedules.py): the fire a tick finds due is
one row per (subscription, fire key), inserted with ON CONFLICT DO NOTHING, so two ticks or a
tick beside the daemon deliver it once; a row is claimed by a conditional UPDATE (only one
claimer sees its status change), with a lease. A fire later than ``report_delivery_grace``, or
older than its schedule (first seen in ``report_schedules``), is recorded as ``skipped``.

A delivery sends one email per recipient and remembers who has had it (``delivered_to``), so
a retry after a partial failure never sends twice. Outcomes by class (engine/channels/base.py):
retryable -> ``retrying`` after ``report_retry_delay`` doubling, until ``report_max_attempts``,
then ``failed``; any permanent error -> ``failed``; no answer -> ``unknown`` (never resent
blindly); a sender that died mid-delivery leaves ``sending`` until its lease ends, then
``unknown``. Every one is listed by `campaign reports deliveries`.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic_core import PydanticCustomError
from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine.app import App
from engine.channels.base import (
    EMAIL,
    Channel,
    ChannelError,
    DuplicateSendError,
    OutboundEmail,
    RetryableError,
    UnknownOutcomeError,
)
from engine.clock import ensure_utc
from engine.db.models import Program, ReportDelivery, ReportSchedule
from engine.db.session import writing
from engine.errors import DefinitionError, DefinitionErrors, EngineError, InputError
from engine.fire_times import LocalCron
from engine.schedules import local_fire, skip_reason
from engine.sending.outbox import split_address
from engine.subscriptions.content import Content, build_sections, render_content
from engine.subscriptions.loader import LoadedSubscription, load_subscription, subscription_paths
from engine.subscriptions.periods import report_period
from engine.subscriptions.schema import Subscription

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=10)
PENDING = ("pending", "retrying")


@dataclass
class DeliveryOutcome:
    subscription: str
    delivery_id: int
    fire_at: datetime
    status: str
    detail: str = ""
    written: list[str] = field(default_factory=list)  # provider ids (the sink: file names)

    @property
    def message(self) -> str:
        text = f"report {self.subscription} (delivery {self.delivery_id}): {self.status}"
        return f"{text}: {self.detail}" if self.detail else text


@dataclass
class ReportsSummary:
    delivered: list[DeliveryOutcome] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    file_errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            *(o.message for o in self.delivered),
            *self.skipped,
            *(f"report subscription skipped: {e}" for e in self.file_errors),
        ]


# --------------------------------------------------------------------------- loading


def load_subscriptions(reports_dir: object) -> tuple[list[LoadedSubscription], list[str]]:
    """Every subscription file that loads; the others as messages (they never stop a tick)."""
    from pathlib import Path

    loaded: list[LoadedSubscription] = []
    errors: list[str] = []
    for path in subscription_paths(Path(str(reports_dir))):
        try:
            loaded.append(load_subscription(path))
        except DefinitionErrors as exc:
            errors.extend(str(e) for e in exc.errors)
        except (DefinitionError, EngineError) as exc:
            errors.append(str(exc))
    return loaded, errors


def subscription_zone(session: Session, subscription: Subscription, default: str) -> str:
    """The schedule's zone, else the program's, else the configured default."""
    if subscription.schedule.timezone:
        return subscription.schedule.timezone
    if subscription.program:
        zone = session.scalar(select(Program.timezone).where(Program.key == subscription.program))
        if zone:
            return str(zone)
    return default


def _insert(session: Session) -> object:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _first_seen(session: Session, name: str, description: str, *, at: datetime) -> datetime:
    digest = hashlib.sha256(description.encode()).hexdigest()
    where = (ReportSchedule.subscription == name, ReportSchedule.schedule_hash == digest)
    seen = session.scalar(select(ReportSchedule.first_seen_at).where(*where))
    if seen is not None:
        return seen
    session.execute(
        _insert(session)(ReportSchedule)  # type: ignore[operator]
        .values(subscription=name, schedule_hash=digest, description=description, first_seen_at=at)
        .on_conflict_do_nothing(index_elements=["subscription", "schedule_hash"])
    )
    seen = session.scalar(select(ReportSchedule.first_seen_at).where(*where))
    assert seen is not None
    return seen


# --------------------------------------------------------------------------- due fires


def record_due(
    session: Session,
    loaded: list[LoadedSubscription],
    *,
    at: datetime,
    grace: timedelta,
    default_zone: str,
) -> list[str]:
    """A delivery row for the latest fire of each subscription that has none yet (pending,
    or skipped with its reason); returns the skips made now, as messages."""
    skipped: list[str] = []
    for item in loaded:
        sub = item.subscription
        zone = subscription_zone(session, sub, default_zone)
        fire = LocalCron(sub.schedule.cron, zone).latest_fire(at)
        if fire is None:
            continue
        key = fire.isoformat()
        exists = select(ReportDelivery.id).where(
            ReportDelivery.subscription == sub.name, ReportDelivery.fire_key == key
        )
        if session.scalar(exists) is not None:
            continue
        seen = _first_seen(session, sub.name, f"cron {sub.schedule.cron} {zone}", at=at)
        if fire < seen:
            continue  # a new or edited schedule delivers from its next fire on: nothing missed
        reason = skip_reason(fire, at=at, first_seen=seen, grace=grace)
        period = report_period(sub.period, fire=fire, timezone=zone)
        created = _new_row(
            session,
            sub.name,
            key=key,
            fire=fire,
            at=at,
            period_label=period.label,
            recipients=list(sub.recipients),
            status="pending" if reason is None else "skipped",
            error=reason,
        )
        if created is not None and reason is not None:
            skipped.append(f"skipped report {sub.name} of {local_fire(fire, zone)}: {reason}")
    return skipped


def _new_row(
    session: Session,
    name: str,
    *,
    key: str,
    fire: datetime,
    at: datetime,
    period_label: str,
    recipients: list[str],
    status: str,
    error: str | None = None,
    manual: bool = False,
) -> int | None:
    created = session.execute(
        _insert(session)(ReportDelivery)  # type: ignore[operator]
        .values(
            subscription=name,
            fire_key=key,
            fire_at=fire,
            manual=manual,
            period_label=period_label,
            recipients=",".join(recipients),
            delivered_to="",
            status=status,
            attempts=0,
            next_attempt_at=at if status == "pending" else None,
            last_error=error,
            created_at=at,
        )
        .on_conflict_do_nothing(index_elements=["subscription", "fire_key"])
        .returning(ReportDelivery.id)
    ).scalar_one_or_none()
    return None if created is None else int(created)


# --------------------------------------------------------------------------- delivering


def _release_dead_claims(session: Session, *, at: datetime) -> int:
    """Claims whose lease ended: their sender died mid-delivery, so it may have gone."""
    result = session.execute(
        update(ReportDelivery)
        .where(ReportDelivery.status == "sending", ReportDelivery.claimed_until < at)
        .values(
            status="unknown",
            claimed_until=None,
            last_error="the sender stopped while delivering: it may have gone; check with the "
            "recipients, then `campaign reports send NAME --to ADDRESS` if it did not",
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _claim(app: App, delivery_id: int, *, at: datetime) -> bool:
    with app.sessions() as session, session.begin():
        result = session.execute(
            update(ReportDelivery)
            .where(
                ReportDelivery.id == delivery_id,
                ReportDelivery.status.in_(PENDING),
                or_(ReportDelivery.next_attempt_at.is_(None), ReportDelivery.next_attempt_at <= at),
            )
            .values(
                status="sending",
                claimed_until=at + LEASE,
                attempts=ReportDelivery.attempts + 1,
            )
        )
        return int(getattr(result, "rowcount", 0) or 0) == 1


def deliver(
    app: App,
    delivery_id: int,
    subscriptions: Mapping[str, LoadedSubscription],
    channel: Channel,
    *,
    at: datetime,
) -> DeliveryOutcome | None:
    """Claim one delivery and send it; None when another process has it (or it is not due)."""
    if not _claim(app, delivery_id, at=at):
        return None
    with app.sessions() as session:
        row = session.get(ReportDelivery, delivery_id)
        assert row is not None
        name, fire, attempts = row.subscription, row.fire_at, row.attempts
        recipients = [r for r in row.recipients.split(",") if r]
        done = [r for r in row.delivered_to.split(",") if r]
        loaded = subscriptions.get(name)
        try:
            if loaded is None:
                raise InputError(
                    f"the subscription file {name}.yaml is gone or does not load; "
                    "`campaign validate` says why"
                )
            sub = loaded.subscription
            content = _content(app, session, sub, fire=fire, at=at)
            from_name, from_email = split_address(app.settings.email_from)
        except EngineError as exc:
            return _finish(app, delivery_id, name, fire, "failed", str(exc), at=at)
    written: list[str] = []
    for index, address in enumerate(recipients):
        if address in done:
            continue
        message = OutboundEmail(
            message_id=f"report-{delivery_id}-{index}",
            to_email=address,
            from_email=from_email,
            from_name=from_name,
            subject=content.subject,
            html=content.html,
            text=content.text,
            categories=("report",),
            custom_args={"report": name},
            attachments=content.attachments,
        )
        try:
            result = channel.send(message)
        except DuplicateSendError:
            result = None  # written by an earlier attempt that died before recording it
        except RetryableError as exc:
            return _retry_or_fail(app, delivery_id, name, fire, attempts, str(exc), at=at)
        except UnknownOutcomeError as exc:
            return _finish(app, delivery_id, name, fire, "unknown", f"{address}: {exc}", at=at)
        except (ChannelError, ValueError) as exc:
            return _finish(app, delivery_id, name, fire, "failed", f"{address}: {exc}", at=at)
        done.append(address)
        if result is not None and result.provider_message_id:
            written.append(result.provider_message_id)
        with app.sessions() as session, session.begin():
            session.execute(
                update(ReportDelivery)
                .where(ReportDelivery.id == delivery_id)
                .values(
                    delivered_to=",".join(done),
                    provider_message_id=(result.provider_message_id if result else None),
                )
            )
    outcome = _finish(app, delivery_id, name, fire, "sent", f"to {', '.join(recipients)}", at=at)
    outcome.written = written
    return outcome


def _content(
    app: App, session: Session, sub: Subscription, *, fire: datetime, at: datetime
) -> Content:
    """The email of the delivery for ``fire``: its period is computed from the fire, so a
    retry days later reports on the same dates."""
    zone = subscription_zone(session, sub, app.settings.default_timezone)
    period = report_period(sub.period, fire=fire, timezone=zone)
    sections = build_sections(session, sub, period=period, at=fire, settings=app.settings)
    return render_content(sub, sections, period=period, timezone=zone, generated_at=at)


def _finish(
    app: App, delivery_id: int, name: str, fire: datetime, status: str, detail: str, *, at: datetime
) -> DeliveryOutcome:
    values: dict[str, object] = {"status": status, "claimed_until": None, "next_attempt_at": None}
    if status == "sent":
        values["sent_at"] = at
        values["last_error"] = None
    else:
        values["last_error"] = detail
    with app.sessions() as session, session.begin():
        session.execute(
            update(ReportDelivery).where(ReportDelivery.id == delivery_id).values(**values)
        )
    if status != "sent":
        log.warning("report %s delivery %s %s: %s", name, delivery_id, status, detail)
    return DeliveryOutcome(name, delivery_id, fire, status, detail)


def retry_delay(attempts: int, base: timedelta) -> timedelta:
    """Wait after the ``attempts``-th failed attempt: base, 2 x base, 4 x base, ..."""
    return base * (2 ** max(0, attempts - 1))


def _retry_or_fail(
    app: App,
    delivery_id: int,
    name: str,
    fire: datetime,
    attempts: int,
    error: str,
    *,
    at: datetime,
) -> DeliveryOutcome:
    limit = app.settings.report_max_attempts
    if attempts >= limit:
        detail = f"gave up after {attempts} attempts: {error}"
        return _finish(app, delivery_id, name, fire, "failed", detail, at=at)
    when = at + retry_delay(attempts, app.settings.report_retry_delay)
    with app.sessions() as session, session.begin():
        session.execute(
            update(ReportDelivery)
            .where(ReportDelivery.id == delivery_id)
            .values(status="retrying", claimed_until=None, next_attempt_at=when, last_error=error)
        )
    log.warning("report %s delivery %s failed (attempt %s): %s", name, delivery_id, attempts, error)
    detail = f"attempt {attempts} of {limit} failed ({error}); next try {when.isoformat()}"
    return DeliveryOutcome(name, delivery_id, fire, "retrying", detail)


# --------------------------------------------------------------------------- entry points


def deliver_due(
    app: App, *, at: datetime, channels: Mapping[str, Channel] | None = None
) -> ReportsSummary:
    """The tick's step: record due fires, then send every delivery that is due (new ones and
    retries). ``channels`` default to the configured ones (closed again here)."""
    at = ensure_utc(at)
    summary = ReportsSummary()
    loaded, summary.file_errors = load_subscriptions(app.settings.reports_dir)
    with app.sessions() as session, session.begin():
        _release_dead_claims(session, at=at)
        summary.skipped = record_due(
            session,
            loaded,
            at=at,
            grace=app.settings.report_delivery_grace,
            default_zone=app.settings.default_timezone,
        )
        due = list(
            session.scalars(
                select(ReportDelivery.id)
                .where(
                    ReportDelivery.status.in_(PENDING),
                    or_(
                        ReportDelivery.next_attempt_at.is_(None),
                        ReportDelivery.next_attempt_at <= at,
                    ),
                )
                .order_by(ReportDelivery.id)
            )
        )
    if not due:
        return summary
    with _email_channel(app, channels) as channel:
        by_name = {item.name: item for item in loaded}
        for delivery_id in due:
            outcome = deliver(app, delivery_id, by_name, channel, at=at)
            if outcome is not None:
                summary.delivered.append(outcome)
    return summary


def send_now(
    app: App,
    loaded: LoadedSubscription,
    *,
    to: list[str],
    at: datetime,
    channels: Mapping[str, Channel] | None = None,
) -> DeliveryOutcome:
    """`campaign reports send NAME --to ADDRESS`: one delivery now, for the period as of now,
    recorded like a scheduled one (a retryable failure is retried by the tick)."""
    from engine.subscriptions.schema import recipient_address

    at = ensure_utc(at)
    addresses = []
    for address in to or list(loaded.subscription.recipients):
        try:
            addresses.append(recipient_address(address))
        except PydanticCustomError as exc:
            raise InputError(f"--to: {(exc.context or {}).get('message', exc)}") from exc
    sub = loaded.subscription
    with writing(app.sessions) as session:  # it reads the zone, then records the delivery
        zone = subscription_zone(session, sub, app.settings.default_timezone)
        period = report_period(sub.period, fire=at, timezone=zone)
        delivery_id = _new_row(
            session,
            sub.name,
            key=f"send:{at.isoformat()}:{uuid.uuid4().hex[:8]}",
            fire=at,
            at=at,
            period_label=period.label,
            recipients=addresses,
            status="pending",
            manual=True,
        )
    assert delivery_id is not None
    with _email_channel(app, channels) as channel:
        outcome = deliver(app, delivery_id, {sub.name: loaded}, channel, at=at)
    assert outcome is not None  # the row is ours: nobody else knows its key yet
    return outcome


@contextmanager
def _email_channel(app: App, channels: Mapping[str, Channel] | None) -> Iterator[Channel]:
    own = channels is None
    if channels is None:
        from engine.channels import build_channels

        channels = build_channels(app.settings, clock=app.clock)
    try:
        yield channels[EMAIL]
    finally:
        if own:
            for channel in channels.values():
                channel.close()


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    subscription: str
    fire_at: datetime
    manual: bool
    period: str
    status: str
    attempts: int
    recipients: str
    delivered_to: str
    next_attempt_at: datetime | None
    sent_at: datetime | None
    error: str | None


def list_deliveries(
    session: Session,
    *,
    subscription: str | None = None,
    problems: bool = False,
    limit: int = 50,
) -> list[DeliveryRow]:
    """Deliveries, newest fire first; ``problems``: only retrying, failed, unknown, skipped."""
    query = select(ReportDelivery).order_by(ReportDelivery.fire_at.desc(), ReportDelivery.id.desc())
    if subscription is not None:
        query = query.where(ReportDelivery.subscription == subscription)
    if problems:
        query = query.where(
            ReportDelivery.status.in_(("retrying", "failed", "unknown", "skipped", "sending"))
        )
    return [
        DeliveryRow(r.id, r.subscription, r.fire_at, r.manual, r.period_label, r.status,
                    r.attempts, r.recipients, r.delivered_to, r.next_attempt_at, r.sent_at,
                    r.last_error)
        for r in session.scalars(query.limit(limit))
    ]  # fmt: skip


@dataclass(frozen=True)
class SubscriptionRow:
    name: str
    reports: str
    period: str
    language: str
    recipients: str
    schedule: str
    next_fire: datetime | None
    last_status: str | None
    last_fire: datetime | None
    problems: int


def list_subscriptions(
    session: Session, loaded: list[LoadedSubscription], *, at: datetime, default_zone: str
) -> list[SubscriptionRow]:
    """Each subscription file with its next fire and its latest delivery."""
    rows = []
    for item in loaded:
        sub = item.subscription
        zone = subscription_zone(session, sub, default_zone)
        last = session.scalars(
            select(ReportDelivery)
            .where(ReportDelivery.subscription == sub.name, ReportDelivery.manual.is_(False))
            .order_by(ReportDelivery.fire_at.desc())
            .limit(1)
        ).first()
        problems = len(list_deliveries(session, subscription=sub.name, problems=True, limit=1000))
        reports = ", ".join(
            r.report + (f" {r.campaign}" if r.campaign else "") for r in sub.reports
        )
        rows.append(
            SubscriptionRow(
                name=sub.name,
                reports=reports,
                period=sub.period,
                language=sub.language,
                recipients=", ".join(sub.recipients),
                schedule=f"cron {sub.schedule.cron} {zone}",
                next_fire=LocalCron(sub.schedule.cron, zone).next_fire(at),
                last_status=last.status if last else None,
                last_fire=last.fire_at if last else None,
                problems=problems,
            )
        )
    return rows


__all__ = [
    "DeliveryOutcome",
    "DeliveryRow",
    "ReportsSummary",
    "SubscriptionRow",
    "deliver_due",
    "list_deliveries",
    "list_subscriptions",
    "load_subscriptions",
    "record_due",
    "retry_delay",
    "send_now",
]
