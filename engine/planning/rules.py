"""The SQL of who a campaign may enroll at one instant, shared by plan, explain and launch.

:class:`Rules` builds, for one campaign, program and instant, the audience condition, the
exclusions in waterfall order (engine/planning/__init__.py lists them), the holdout split and
the reason of each member; plus the fire-time and lookup helpers the three callers share.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    and_,
    case,
    cast,
    exists,
    not_,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session, aliased

from engine import audience as aud
from engine import sampling
from engine.clock import ensure_utc
from engine.consent.defaults import consent_defaults
from engine.consent.wording import NOT_STATED_IS_NO, not_stated_rule
from engine.db.models import (
    ActivityEvent,
    CampaignRun,
    Consent,
    Enrollment,
    Participant,
    Program,
    Suppression,
)
from engine.definitions.durations import format_duration
from engine.definitions.schema import CampaignDefinition
from engine.errors import InputError, NotFoundError
from engine.fire_times import LocalCron
from engine.policy.gate import ConsentRules
from engine.programs import get_program
from engine.schedules import reentry_bound
from engine.sending.contact_ledger import contact_count
from engine.settings import Settings

_S = TypeVar("_S", bound=Select)


# Whether a channel needs an explicit opt-in (True) or is allowed unless opted out (False):
# the send-time gate's defaults, so planning and sending can never disagree.
CONSENT_REQUIRED: Mapping[str, bool] = {
    channel: ConsentRules().requires_opt_in(channel) for channel in ("email", "sms", "call")
}


ONE_OFF_KEY = "once"


# Run statuses whose open enrollments still count as "in the campaign".
OPEN_RUN_STATUSES = ("active", "paused")


BUILT_IN_REASONS: tuple[tuple[str, str], ...] = (
    ("suppressed", "suppressed on every channel the campaign uses"),
    ("no_consent", f"no channel left with an address and consent ({NOT_STATED_IS_NO})"),
    ("converted", "converted already (a goal event within the goal window)"),
    ("frequency_cap", "frequency cap reached"),
    ("already_enrolled", "in an active or paused run of this campaign"),
    ("reentry", "re-entry rule"),
)


@dataclass(frozen=True)
class GlobalCap:
    """The settings-wide frequency cap (Settings.frequency_cap_max / frequency_cap_per)."""

    max: int
    per: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> GlobalCap:
        return cls(settings.frequency_cap_max, settings.frequency_cap_per)

    @classmethod
    def default(cls) -> GlobalCap:
        fields = Settings.model_fields
        return cls(fields["frequency_cap_max"].default, fields["frequency_cap_per"].default)


def holdout_bucket_sql(sample_key: Any, salt_value: int) -> ColumnElement[int]:
    """SQL twin of engine.sampling.bucket (64-bit arithmetic on both databases)."""
    mixed = (cast(sample_key, BigInteger) + salt_value) * 40503
    return (mixed % 2147483647) % sampling.BUCKETS


def holdout_salt(campaign: str) -> int:
    return sampling.salt(f"holdout:{campaign}")


def holdout_threshold(percent: Decimal) -> int:
    """Buckets below this are holdout (percent has at most 2 decimals: basis points)."""
    return int(Decimal(percent) * 100)


def _address(channel: str) -> Any:
    return Participant.email if channel == "email" else Participant.phone


def _suppressed(channel: str) -> ColumnElement[bool]:
    return exists(
        select(1)
        .select_from(Suppression)
        .where(
            Suppression.channel.in_([channel, "all"]),
            Suppression.address == _address(channel),
        )
    )


def _consent_ok(channel: str, by_default: bool) -> ColumnElement[bool]:
    """A stated opt-in where the channel needs one; otherwise (email, or a program default
    that states it for members who did not: engine/consent/defaults.py) no stated opt-out."""
    consent = aliased(Consent)
    required = CONSENT_REQUIRED[channel] and not by_default
    status = "opted_in" if required else "opted_out"
    row = exists(
        select(1)
        .select_from(consent)
        .where(
            consent.participant_id == Participant.id,
            consent.channel == channel,
            consent.status == status,
        )
    )
    return row if required else not_(row)


def usable_sql(channel: str, *, by_default: bool = False) -> ColumnElement[bool]:
    """The member can be contacted on this channel: address, no suppression, consent.
    ``by_default``: the member's program states consent on it for members who did not."""
    return and_(
        _address(channel).is_not(None),
        not_(_suppressed(channel)),
        _consent_ok(channel, by_default),
    )


class Rules:
    """The SQL of one campaign's eligibility at one instant."""

    def __init__(
        self,
        definition: CampaignDefinition,
        program: Program,
        at: datetime,
        global_cap: GlobalCap,
    ) -> None:
        self.definition = definition
        self.program = program
        self.at = at
        self.tz = program.timezone
        self.global_cap = global_cap
        # This launch's time for re-entry: its fire (the launch instant for one-offs).
        self.fire_at = latest_fire_time(definition, at) or at
        schedule = definition.schedule
        self.schedule_tz = schedule.timezone if schedule and schedule.timezone else self.tz
        self.channels = sorted(definition.channels)
        # channel -> since when the program takes a consent not stated as given on it.
        self.consent_defaults = consent_defaults(program)

    # The audience -------------------------------------------------------------------
    def audience(self) -> ColumnElement[bool]:
        return and_(
            Participant.program_id == self.program.id,
            aud.audience_condition(self.definition.audience, at=self.at, tz=self.tz),
        )

    # Exclusions, in waterfall order -------------------------------------------------
    def exclusions(self) -> list[tuple[str, str, ColumnElement[bool]]]:
        d, at = self.definition, self.at
        rules: list[tuple[str, str, ColumnElement[bool]]] = []
        for index, filter_ in enumerate(d.exclusions):
            rules.append(
                (
                    f"exclusions[{index}]",
                    f"campaign exclusion {index + 1}",
                    aud.audience_condition(filter_, at=at, tz=self.tz),
                )
            )
        suppressed = [_suppressed(c) for c in self.channels]
        rules.append(
            (
                "suppressed",
                BUILT_IN_REASONS[0][1],
                and_(
                    *(
                        or_(s, _address(c).is_(None))
                        for s, c in zip(suppressed, self.channels, strict=True)
                    ),
                    or_(*suppressed),
                ),
            )
        )
        rules.append(
            (
                "no_consent",
                self.no_consent_description(),
                and_(
                    *(
                        not_(usable_sql(c, by_default=c in self.consent_defaults))
                        for c in self.channels
                    )
                ),
            )
        )
        rules.append(("converted", BUILT_IN_REASONS[2][1], self.converted()))
        rules.append(("frequency_cap", BUILT_IN_REASONS[3][1], or_(*self.caps())))
        rules.append(("already_enrolled", BUILT_IN_REASONS[4][1], self.already_enrolled()))
        rules.append(("reentry", self.reentry_description(), self.reentry()))
        return rules

    def no_consent_description(self) -> str:
        if not self.consent_defaults:
            return BUILT_IN_REASONS[1][1]
        rule = not_stated_rule(self.consent_defaults)
        return f"no channel left with an address and consent ({rule})"

    def converted(self) -> ColumnElement[bool]:
        goal = self.definition.goal
        return exists(
            select(1)
            .select_from(ActivityEvent)
            .where(
                ActivityEvent.participant_id == Participant.id,
                ActivityEvent.type.in_(goal.events),
                ActivityEvent.occurred_at >= self.at - goal.window,
                ActivityEvent.occurred_at <= self.at,
            )
        )

    def cap_rules(self) -> list[tuple[int, timedelta]]:
        caps = [(self.global_cap.max, self.global_cap.per)]
        if self.definition.frequency_cap is not None:
            caps.insert(0, (self.definition.frequency_cap.max, self.definition.frequency_cap.per))
        return caps

    def contact_count(self, per: timedelta) -> ColumnElement[int]:
        return contact_count(Participant.id, self.at - per, self.at)

    def caps(self) -> list[ColumnElement[bool]]:
        return [self.contact_count(per) >= maximum for maximum, per in self.cap_rules()]

    def already_enrolled(self) -> ColumnElement[bool]:
        return exists(
            select(1)
            .select_from(Enrollment)
            .join(CampaignRun, CampaignRun.id == Enrollment.run_id)
            .where(
                Enrollment.campaign == self.definition.name,
                Enrollment.participant_id == Participant.id,
                Enrollment.state == "active",
                CampaignRun.status.in_(OPEN_RUN_STATUSES),
            )
        )

    def reentry(self) -> ColumnElement[bool]:
        where = [
            Enrollment.campaign == self.definition.name,
            Enrollment.participant_id == Participant.id,
        ]
        after = self.definition.reentry_after
        if after is None:
            return exists(select(1).select_from(Enrollment).where(*where))
        # A run's time is its fire key (ISO 8601 UTC, so text order is time order), or its
        # launch instant for one-off runs (key 'once'): never a recurring run's launch instant.
        bound = reentry_bound(self.fire_at, after, self.schedule_tz)
        key = bound.since.astimezone(UTC).isoformat()
        if bound.inclusive:
            by_fire, by_launch = CampaignRun.fire_key >= key, Enrollment.enrolled_at >= bound.since
        else:
            by_fire, by_launch = CampaignRun.fire_key > key, Enrollment.enrolled_at > bound.since
        is_fire_time = CampaignRun.fire_key.like("____-__-__T__:__:__%")
        recent = case(
            (is_fire_time, case((by_fire, 1), else_=0)),
            else_=case((by_launch, 1), else_=0),
        )
        return exists(
            select(1)
            .select_from(Enrollment)
            .join(CampaignRun, CampaignRun.id == Enrollment.run_id)
            .where(*where, recent == 1)
        )

    def reentry_description(self) -> str:
        after = self.definition.reentry_after
        if after is None:
            return "re-entry: enrolled in this campaign before (reentry: once)"
        return f"re-entry: enrolled in this campaign in the last {format_duration(after)}"

    # Groups -------------------------------------------------------------------------
    def group(self) -> ColumnElement[str]:
        bucket = holdout_bucket_sql(Participant.sample_key, holdout_salt(self.definition.name))
        threshold = holdout_threshold(self.definition.holdout_percent)
        return case((bucket < threshold, "holdout"), else_="treatment")

    def reason(self) -> ColumnElement[str]:
        """The first exclusion that applies, else the group ('treatment' / 'holdout')."""
        return case(*((cond, label) for label, _, cond in self.exclusions()), else_=self.group())

    def from_audience(self, statement: _S) -> _S:
        """``statement`` over the audience members (participants joined to the audience).

        The audience is a MATERIALIZED CTE so that the database plans it on its own, with
        sound row estimates (status, dates, event anti-joins), before the exclusions run per
        member; planned together, PostgreSQL's estimate after a dozen filters is often so low
        that it picks nested loops over sequential scans.
        """
        members = (
            select(Participant.id.label("id"))
            .where(self.audience())
            .cte("audience")
            .prefix_with("MATERIALIZED")
        )
        return statement.select_from(Participant).join(members, members.c.id == Participant.id)

    def not_excluded(self) -> ColumnElement[bool]:
        # One CASE rather than AND NOT EXISTS...: each member is checked in waterfall order
        # with index probes, and the planner cannot turn the checks into anti-joins built on
        # a bad estimate.
        excluded = case(*((cond, label) for label, _, cond in self.exclusions()))
        return excluded.is_(None)


def latest_fire_time(definition: CampaignDefinition, at: datetime) -> datetime | None:
    """The latest fire time of a recurring schedule at or before ``at`` (None if none in the
    last five years): one per local calendar fire, DST-safe (engine/fire_times.py)."""
    schedule = definition.schedule
    if schedule is None or schedule.cron is None or schedule.timezone is None:
        return None
    return LocalCron(schedule.cron, schedule.timezone).latest_fire(ensure_utc(at))


def fire_key(definition: CampaignDefinition, at: datetime) -> tuple[str | None, str | None]:
    """(fire key, reason it cannot launch now). One-off campaigns have key ``once``."""
    schedule = definition.schedule
    if schedule is not None and schedule.cron is not None:
        fire = latest_fire_time(definition, at)
        if fire is None:
            return None, f"its schedule {schedule.cron!r} has not fired before {at.isoformat()}"
        return fire.isoformat(), None
    if schedule is not None and schedule.start is not None and schedule.start > at:
        wait = schedule.start - at
        return ONE_OFF_KEY, (
            f"it is scheduled to start at {schedule.start.isoformat()} "
            f"(in {_human(wait)}); launch it then, or with --at at or after that time"
        )
    return ONE_OFF_KEY, None


def _human(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{mins}m" if mins else ""]
    return " ".join(p for p in parts if p) or "less than a minute"


def program_of(session: Session, definition: CampaignDefinition) -> Program:
    try:
        return get_program(session, definition.program)
    except NotFoundError as exc:
        raise NotFoundError(f"campaign {definition.name}: {exc}") from exc
    except InputError as exc:  # several programs and the file names none
        raise InputError(
            f"campaign {definition.name} names no program and there are several; "
            f"add `program: KEY` to its file"
        ) from exc


def existing_run(session: Session, campaign: str, key: str | None) -> CampaignRun | None:
    if key is None:
        return None
    return session.scalar(
        select(CampaignRun).where(CampaignRun.campaign == campaign, CampaignRun.fire_key == key)
    )


def load_events(
    session: Session, participant_id: int, types: Iterable[str], at: datetime
) -> list[aud.Event]:
    types = sorted(set(types))
    if not types:
        return []
    rows = session.execute(
        select(
            ActivityEvent.type,
            ActivityEvent.occurred_at,
            ActivityEvent.points,
            ActivityEvent.amount,
        )
        .where(
            ActivityEvent.participant_id == participant_id,
            ActivityEvent.type.in_(types),
            ActivityEvent.occurred_at <= at,
        )
        .order_by(ActivityEvent.occurred_at)
    ).all()
    return [aud.Event(t, o, p, a) for t, o, p, a in rows]


def leaf_values(node: aud.ExplainNode, into: dict[str, Any]) -> dict[str, Any]:
    if node.children:
        for child in node.children:
            leaf_values(child, into)
    else:
        into[node.condition] = node.actual
    return into


def all_event_types(definition: CampaignDefinition) -> set[str]:
    types = aud.referenced_event_types(definition.audience)
    for filter_ in definition.exclusions:
        types |= aud.referenced_event_types(filter_)
    return types


def tune(session: Session) -> None:
    """PostgreSQL's JIT compiles these large one-off statements for seconds at a time and
    gains nothing back; switch it off for this transaction only."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL jit = off"))
