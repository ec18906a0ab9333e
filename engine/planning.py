"""Plan (a dry run), explain (one member) and launch (a run and its enrollments).

Who is enrolled is decided in SQL, in one statement: the audience (engine/audience.py) minus
the exclusions below, split into treatment and holdout by a deterministic bucket. ``plan``
counts the same thing without writing; ``launch`` inserts it with INSERT ... SELECT.

Exclusions, in this fixed order (a waterfall: each excluded member is counted once, under the
FIRST reason that applies):

1. ``exclusions[i]``: the campaign's own exclusion filters, in file order.
2. ``suppressed``: no channel the campaign uses is left once suppressions are applied, and at
   least one of them is suppressed. A channel is suppressed when the suppressions table holds
   the member's address for it (email for email; phone for sms and call) on that channel or on
   ``all``. A missing address counts as unreachable on that channel.
3. ``no_consent``: no channel the campaign uses has an address, no suppression AND consent.
   Consent: email needs no recorded opt-in (not stated = allowed; an ``opted_out`` row
   blocks it: soft opt-in for members of a program they joined); SMS and calls need an explicit
   ``opted_in`` row (the safe US default under the TCPA; a missing row means "not allowed"),
   unless the campaign's program states consent on the channel for members who did not
   (engine/consent/defaults.py): then, as for email, only an ``opted_out`` row blocks it.
   Members with no address at all for the campaign's channels land here too.
4. ``converted``: a goal event in ``goal.window`` before ``at``; they need no nudge.
5. ``frequency_cap``: contacts (the contacts ledger, all campaigns and channels, plus outbox
   messages in ``unknown``, which may have gone: engine/sending/contact_ledger.py) in the rolling
   window ``(at - per, at]`` have reached ``max``, for the campaign's cap or the global one
   from settings; both apply, so the stricter wins in every case.
6. ``already_enrolled``: in an open (state ``active``) enrollment of an active or paused run
   of this campaign.
7. ``reentry``: ``once``: ever enrolled in this campaign (any run, any state); ``{after: D}``:
   enrolled in a run of this campaign whose fire time is within D before this fire (whole
   days count local calendar days: engine/schedules.py).

Holdout: ``bucket(sample_key, salt('holdout:' + campaign)) < holdout_percent * 100`` with
engine.sampling's arithmetic, evaluated in SQL; the same member is in the same group on every
database and in every run of the campaign.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from engine import audience as aud
from engine import sampling
from engine.clock import ensure_utc
from engine.consent.defaults import consent_defaults
from engine.consent.wording import (
    NOT_STATED_IS_NO,
    by_program_default,
    closed_channels,
    closed_from_facts,
    not_stated_rule,
)
from engine.db.models import (
    ActivityEvent,
    CampaignRun,
    Consent,
    Enrollment,
    Participant,
    Program,
    Suppression,
)
from engine.db.types import UTCDateTime
from engine.definitions.durations import format_duration
from engine.definitions.loader import LoadedDefinition
from engine.definitions.schema import CampaignDefinition
from engine.errors import EngineError, InputError, NotFoundError
from engine.fire_times import LocalCron
from engine.policy.gate import ConsentRules
from engine.preview import StepSmsSize, sms_step_sizes
from engine.programs import get_program
from engine.schedules import first_seen, local_fire, record_skip, reentry_bound, skip_reason
from engine.sending.contact_ledger import contact_count
from engine.sending.deadlines import describe_deadline
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


# --------------------------------------------------------------------------- results


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


@dataclass(frozen=True)
class ExclusionCount:
    reason: str
    description: str
    count: int


@dataclass(frozen=True)
class StepVolume:
    """How many treatment members the step's channel can reach today (an upper bound: step
    conditions and later conversions only lower it)."""

    step_id: str
    channel: str
    projected: int
    # The step's deadline in words, and how many treatment members would already be past it
    # when the step falls due (a member date of expires_before before that day): skipped.
    deadline: str = "none"
    expired: int = 0


@dataclass(frozen=True)
class SampleMember:
    external_id: str
    group: str
    values: dict[str, Any]


@dataclass(frozen=True)
class PlanReport:
    campaign: str
    program: str
    at: datetime
    definition_hash: str
    fire_key: str | None
    existing_run_id: int | None
    audience: int
    exclusions: list[ExclusionCount]
    eligible: int
    treatment: int
    holdout: int
    holdout_percent: Decimal
    reachable: dict[str, int]
    steps: list[StepVolume]
    sample: list[SampleMember]
    note: str | None = None
    # Each SMS step rendered for the first sample member (treatment first): segments (#4).
    sms: list[StepSmsSize] = field(default_factory=list)


@dataclass(frozen=True)
class ExclusionCheck:
    reason: str
    description: str
    excluded: bool
    actual: Any = None


@dataclass(frozen=True)
class Explanation:
    campaign: str
    external_id: str
    at: datetime
    in_audience: bool
    audience: aud.ExplainNode
    exclusions: list[ExclusionCheck]
    group: str | None
    verdict: str


@dataclass(frozen=True)
class LaunchResult:
    run_id: int
    campaign: str
    fire_key: str
    created: bool
    status: str
    launched_at: datetime
    enrolled: int
    treatment: int
    holdout: int

    @property
    def message(self) -> str:
        if self.created:
            return (
                f"Launched run {self.run_id} of {self.campaign}: {self.enrolled} enrolled "
                f"({self.treatment} treatment, {self.holdout} holdout)."
            )
        which = "" if self.fire_key == ONE_OFF_KEY else f" for the fire time {self.fire_key}"
        return (
            f"{self.campaign} was already launched{which} as run {self.run_id} "
            f"on {self.launched_at.isoformat()} (status {self.status}); nobody new was enrolled."
        )


@dataclass(frozen=True)
class DueLaunch:
    campaign: str
    result: LaunchResult | None = None
    error: str | None = None
    # A fire time not launched (late past the grace, or before its schedule was known).
    skipped: str | None = None
    # Due but refused by the caller's check (a real program still on the demo's sender
    # identity): said on every tick until fixed, and launched at the first tick after that.
    refused: str | None = None


# The daemon's and the tick's default misfire grace (Settings.scheduler_misfire_grace_seconds).
DEFAULT_MISFIRE_GRACE = timedelta(
    seconds=Settings.model_fields["scheduler_misfire_grace_seconds"].default
)


# --------------------------------------------------------------------------- SQL rules


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


class _Rules:
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


# --------------------------------------------------------------------------- helpers


def resolve_at(
    session: Session, loaded: LoadedDefinition, value: str | None, *, now: datetime
) -> datetime:
    """``--at``: ISO 8601; a naive value is in the program's time zone; None is ``now``."""
    if value is None:
        return ensure_utc(now)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise InputError(
            f"--at {value!r} is not an ISO 8601 date-time; use e.g. 2026-03-02T09:00 or "
            "2026-03-02T09:00:00-05:00"
        ) from exc
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        program = _program(session, loaded.definition)
        parsed = parsed.replace(tzinfo=ZoneInfo(program.timezone))
    return parsed.astimezone(UTC)


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


def _program(session: Session, definition: CampaignDefinition) -> Program:
    try:
        return get_program(session, definition.program)
    except NotFoundError as exc:
        raise NotFoundError(f"campaign {definition.name}: {exc}") from exc
    except InputError as exc:  # several programs and the file names none
        raise InputError(
            f"campaign {definition.name} names no program and there are several; "
            f"add `program: KEY` to its file"
        ) from exc


def _existing_run(session: Session, campaign: str, key: str | None) -> CampaignRun | None:
    if key is None:
        return None
    return session.scalar(
        select(CampaignRun).where(CampaignRun.campaign == campaign, CampaignRun.fire_key == key)
    )


def _load_events(
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


def _leaf_values(node: aud.ExplainNode, into: dict[str, Any]) -> dict[str, Any]:
    if node.children:
        for child in node.children:
            _leaf_values(child, into)
    else:
        into[node.condition] = node.actual
    return into


def _all_event_types(definition: CampaignDefinition) -> set[str]:
    types = aud.referenced_event_types(definition.audience)
    for filter_ in definition.exclusions:
        types |= aud.referenced_event_types(filter_)
    return types


# --------------------------------------------------------------------------- plan


def plan(
    session: Session,
    loaded: LoadedDefinition,
    *,
    at: datetime,
    sample_size: int = 10,
    global_cap: GlobalCap | None = None,
    settings: Settings | None = None,
) -> PlanReport:
    """Who this campaign would reach at ``at``, who is excluded and why. Writes nothing.
    With ``settings`` (the templates), each SMS step's segments for a sample member too."""
    at = ensure_utc(at)
    definition = loaded.definition
    program = _program(session, definition)
    rules = _Rules(definition, program, at, global_cap or GlobalCap.default())
    key, not_now = fire_key(definition, at)
    existing = _existing_run(session, definition.name, key)
    _tune(session)

    usable = {c: usable_sql(c, by_default=c in rules.consent_defaults) for c in rules.channels}
    inner = rules.from_audience(
        select(
            rules.reason().label("reason"),
            *(case((cond, 1), else_=0).label(f"usable_{c}") for c, cond in usable.items()),
        )
    ).subquery()
    rows = session.execute(
        select(
            inner.c.reason,
            func.count(),
            *(func.sum(inner.c[f"usable_{c}"]) for c in rules.channels),
        ).group_by(inner.c.reason)
    ).all()
    counts: dict[str, int] = {}
    reachable = dict.fromkeys(rules.channels, 0)
    for row in rows:
        counts[row[0]] = int(row[1])
        if row[0] == "treatment":
            for index, channel in enumerate(rules.channels):
                reachable[channel] = int(row[2 + index] or 0)
    exclusions = [
        ExclusionCount(label, description, counts.get(label, 0))
        for label, description, _ in rules.exclusions()
    ]
    treatment, holdout = counts.get("treatment", 0), counts.get("holdout", 0)
    expired = _expired_at_due(session, rules, definition, at, program.timezone)
    steps = [
        StepVolume(
            s.id, s.channel, reachable[s.channel], describe_deadline(s), expired.get(s.id, 0)
        )
        for s in definition.steps
    ]

    sample = _sample(session, rules, sample_size) if sample_size > 0 else []
    note = None
    if existing is not None:
        which = "" if existing.fire_key == ONE_OFF_KEY else f" for {existing.fire_key}"
        note = (
            f"already launched{which} as run {existing.id} "
            f"(status {existing.status}); launching again enrolls nobody"
        )
    elif not_now is not None:
        note = f"cannot launch now: {not_now}"
    sms: list[StepSmsSize] = []
    if settings is not None and sample:
        member = next((m for m in sample if m.group == "treatment"), sample[0])
        sms = sms_step_sizes(session, loaded, member.external_id, settings=settings)
    return PlanReport(
        campaign=definition.name,
        program=program.key,
        at=at,
        definition_hash=loaded.content_hash,
        fire_key=key,
        existing_run_id=existing.id if existing is not None else None,
        audience=sum(counts.values()),
        exclusions=exclusions,
        eligible=treatment + holdout,
        treatment=treatment,
        holdout=holdout,
        holdout_percent=definition.holdout_percent,
        reachable=reachable,
        steps=steps,
        sample=sample,
        note=note,
        sms=sms,
    )


def _expired_at_due(
    session: Session, rules: _Rules, definition: CampaignDefinition, at: datetime, tz: str
) -> dict[str, int]:
    """step id -> treatment members whose ``expires_before`` date is on or before the local
    date (program zone) the step falls due if launched at ``at`` (delays only)."""
    result: dict[str, int] = {}
    due = at
    for step in definition.steps:
        due += step.delay
        if step.expires_before is None:
            continue
        day = due.astimezone(ZoneInfo(tz)).date()
        column = Participant.__table__.c[step.expires_before]
        inner = rules.from_audience(
            select(rules.reason().label("reason"), column.label("deadline"))
        ).subquery()
        result[step.id] = int(
            session.scalar(
                select(func.count())
                .select_from(inner)
                .where(inner.c.reason == "treatment", inner.c.deadline <= day)
            )
            or 0
        )
    return result


def _sample(session: Session, rules: _Rules, size: int) -> list[SampleMember]:
    # Id order lets the database stop after `size` eligible members instead of sorting all.
    rows = session.execute(
        rules.from_audience(select(Participant, rules.group().label("group")))
        .where(rules.not_excluded())
        .order_by(Participant.id)
        .limit(size)
    ).all()
    types = _all_event_types(rules.definition)
    members = []
    for participant, group in rows:
        values = aud.participant_values(participant)
        events = _load_events(session, participant.id, types, rules.at)
        tree = aud.explain(rules.definition.audience, values, events, rules.at, tz=rules.tz)
        members.append(SampleMember(participant.external_id, group, _leaf_values(tree, {})))
    return members


# --------------------------------------------------------------------------- explain


def explain(
    session: Session,
    loaded: LoadedDefinition,
    external_id: str,
    *,
    at: datetime,
    global_cap: GlobalCap | None = None,
) -> Explanation:
    """Why member ``external_id`` would (not) be enrolled at ``at``: every audience node and
    every exclusion with the member's actual values, and the verdict."""
    at = ensure_utc(at)
    definition = loaded.definition
    program = _program(session, definition)
    participant = session.scalar(
        select(Participant).where(
            Participant.program_id == program.id, Participant.external_id == external_id
        )
    )
    if participant is None:
        raise NotFoundError(f"no participant {external_id!r} in program {program.key!r}")
    rules = _Rules(definition, program, at, global_cap or GlobalCap.default())
    values = aud.participant_values(participant)
    events = _load_events(session, participant.id, _all_event_types(definition), at)
    tree = aud.explain(definition.audience, values, events, at, tz=rules.tz)

    exclusion_rules = rules.exclusions()
    flags = session.execute(
        select(
            case((rules.audience(), 1), else_=0),
            *(case((cond, 1), else_=0) for _, _, cond in exclusion_rules),
            rules.group(),
        ).where(Participant.id == participant.id)
    ).one()
    in_audience = bool(flags[0])
    actuals = _exclusion_actuals(session, rules, participant, events)
    checks = [
        ExclusionCheck(label, description, bool(flags[1 + i]), actuals.get(label))
        for i, (label, description, _) in enumerate(exclusion_rules)
    ]
    group = str(flags[-1])
    first = next((c for c in checks if c.excluded), None)
    if not in_audience:
        verdict = "not in the audience"
        group_out: str | None = None
    elif first is not None and first.reason == "no_consent":
        required = {
            c: needed and c not in rules.consent_defaults for c, needed in CONSENT_REQUIRED.items()
        }
        closed = closed_from_facts(actuals["no_consent"], required)
        verdict = f"excluded: no_consent: {closed_channels(closed)}"
        group_out = None
    elif first is not None:
        verdict = f"excluded: {first.reason} ({first.description})"
        group_out = None
    else:
        verdict = f"would be enrolled in {group}"
        group_out = group
    return Explanation(
        campaign=definition.name,
        external_id=external_id,
        at=at,
        in_audience=in_audience,
        audience=tree,
        exclusions=checks,
        group=group_out,
        verdict=verdict,
    )


def _exclusion_actuals(
    session: Session, rules: _Rules, participant: Participant, events: list[aud.Event]
) -> dict[str, Any]:
    definition, at = rules.definition, rules.at
    actuals: dict[str, Any] = {}
    values = aud.participant_values(participant)
    for index, filter_ in enumerate(definition.exclusions):
        tree = aud.explain(filter_, values, events, at, tz=rules.tz)
        actuals[f"exclusions[{index}]"] = _leaf_values(tree, {})

    addresses = {
        c: participant.email if c == "email" else participant.phone for c in rules.channels
    }
    present = [a for a in addresses.values() if a is not None]
    suppressions = (
        session.execute(
            select(Suppression.channel, Suppression.address, Suppression.reason).where(
                Suppression.address.in_(present)
            )
        ).all()
        if present
        else []
    )
    consents = dict(
        session.execute(
            select(Consent.channel, Consent.status).where(Consent.participant_id == participant.id)
        ).all()
    )
    channels: dict[str, Any] = {}
    for channel, address in addresses.items():
        hits = [
            f"{c} ({reason})"
            for c, a, reason in suppressions
            if a == address and c in (channel, "all")
        ]
        channels[channel] = {
            "address": address,
            "suppressed": hits,
            "consent": consents.get(channel)
            or (
                by_program_default(rules.consent_defaults[channel])
                if channel in rules.consent_defaults
                else "not stated"
            ),
        }
    actuals["suppressed"] = {c: v["suppressed"] or None for c, v in channels.items()}
    actuals["no_consent"] = channels

    goal = definition.goal
    goal_events = _load_events(session, participant.id, goal.events, at)
    recent = [e for e in goal_events if e.occurred_at >= at - goal.window]
    actuals["converted"] = (
        {"last": recent[-1].type, "at": recent[-1].occurred_at} if recent else None
    )
    caps = {}
    for maximum, per in rules.cap_rules():
        count = session.scalar(select(contact_count(literal(participant.id), at - per, at)))
        caps[f"max {maximum} per {format_duration(per)}"] = int(count or 0)
    actuals["frequency_cap"] = caps
    enrollments = session.execute(
        select(Enrollment.run_id, Enrollment.state, Enrollment.enrolled_at, CampaignRun.status)
        .join(CampaignRun, CampaignRun.id == Enrollment.run_id)
        .where(Enrollment.campaign == definition.name, Enrollment.participant_id == participant.id)
        .order_by(Enrollment.enrolled_at)
    ).all()
    actuals["already_enrolled"] = [
        {"run": run_id, "state": state, "run_status": status}
        for run_id, state, _, status in enrollments
        if state == "active" and status in OPEN_RUN_STATUSES
    ] or None
    actuals["reentry"] = {"last_enrolled_at": enrollments[-1][2]} if enrollments else None
    return actuals


# --------------------------------------------------------------------------- launch


def _serialise(session: Session, name: str) -> None:
    """Take the per-campaign launch lock for the rest of the transaction.

    PostgreSQL: a transaction-level advisory lock, so concurrent launches of one campaign (two
    cron jobs, a fat finger) run one after the other and the second sees the first's run.
    SQLite: a write that changes nothing takes the database's write lock now; it must be the
    first statement of the transaction, so a reader never has to upgrade a stale snapshot.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(sampling.salt(f"launch:{name}"))))
    else:
        session.execute(update(CampaignRun).where(text("1 = 0")).values(status=CampaignRun.status))


def _tune(session: Session) -> None:
    """PostgreSQL's JIT compiles these large one-off statements for seconds at a time and
    gains nothing back; switch it off for this transaction only."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL jit = off"))


def _insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def launch(
    session: Session,
    loaded: LoadedDefinition,
    *,
    at: datetime,
    global_cap: GlobalCap | None = None,
) -> LaunchResult:
    """Create the run and its enrollments in the caller's transaction, in SQL.

    Idempotent: a second (or concurrent) launch of the same one-off campaign, or of the same
    cron fire time, returns the existing run and enrolls nobody. On SQLite call it first in its
    transaction (see _serialise).
    """
    at = ensure_utc(at)
    definition = loaded.definition
    _serialise(session, definition.name)
    program = _program(session, definition)
    key, not_now = fire_key(definition, at)
    if key is None or not_now is not None:
        raise InputError(
            f"campaign {definition.name} cannot be launched at {at.isoformat()}: {not_now}"
        )
    insert = _insert(session)
    run_id = session.execute(
        insert(CampaignRun)
        .values(
            campaign=definition.name,
            program_id=program.id,
            definition_hash=loaded.content_hash,
            definition_source=loaded.source,
            fire_key=key,
            status="active",
            launched_at=at,
            enrolled_count=0,
            holdout_count=0,
        )
        .on_conflict_do_nothing(index_elements=["campaign", "fire_key"])
        .returning(CampaignRun.id)
    ).scalar_one_or_none()
    if run_id is None:
        existing = _existing_run(session, definition.name, key)
        assert existing is not None
        return LaunchResult(
            run_id=existing.id,
            campaign=existing.campaign,
            fire_key=existing.fire_key,
            created=False,
            status=existing.status,
            launched_at=existing.launched_at,
            enrolled=existing.enrolled_count,
            treatment=existing.enrolled_count - existing.holdout_count,
            holdout=existing.holdout_count,
        )

    rules = _Rules(definition, program, at, global_cap or GlobalCap.default())
    _tune(session)
    group = rules.group()
    when = literal(at, UTCDateTime())
    rows = rules.from_audience(
        select(
            literal(run_id, BigInteger()),
            literal(definition.name, String()),
            Participant.id,
            group,
            when,
            literal("active", String()),
            case((group == "treatment", when)),
            literal(0, Integer()),
        )
    ).where(rules.not_excluded())
    # The ORDER BY makes PostgreSQL compute every row before inserting the first: otherwise
    # the already-enrolled / re-entry checks probe `enrollments` while this very statement
    # fills it, and with the statistics of an empty table (seq scan "free") that is quadratic
    # (15 s instead of 3 s for 40,000 members). It also inserts in key order.
    rows = rows.order_by(Participant.id)
    session.execute(
        insert(Enrollment)
        .from_select(
            [
                "run_id",
                "campaign",
                "participant_id",
                "group",
                "enrolled_at",
                "state",
                "next_action_at",
                "next_step_index",
            ],
            rows,
        )
        .on_conflict_do_nothing(index_elements=["run_id", "participant_id"])
    )
    groups = dict(
        session.execute(
            select(Enrollment.group, func.count())
            .where(Enrollment.run_id == run_id)
            .group_by(Enrollment.group)
        ).all()
    )
    treatment, holdout = int(groups.get("treatment", 0)), int(groups.get("holdout", 0))
    session.execute(
        update(CampaignRun)
        .where(CampaignRun.id == run_id)
        .values(enrolled_count=treatment + holdout, holdout_count=holdout)
    )
    return LaunchResult(
        run_id=run_id,
        campaign=definition.name,
        fire_key=key,
        created=True,
        status="active",
        launched_at=at,
        enrolled=treatment + holdout,
        treatment=treatment,
        holdout=holdout,
    )


def launch_due(
    session: Session,
    definitions: Sequence[LoadedDefinition],
    *,
    at: datetime,
    global_cap: GlobalCap | None = None,
    grace: timedelta = DEFAULT_MISFIRE_GRACE,
    refuse: Callable[[CampaignDefinition], str | None] | None = None,
) -> list[DueLaunch]:
    """For the scheduler's tick: launch every scheduled campaign whose time has come (one-off
    ``start`` reached, or a cron fire time) and that has no run for it yet. Campaigns without
    a schedule are launched by hand only. One campaign's error does not stop the others.

    A cron fire later than ``grace``, or older than its schedule, is skipped instead and
    reported once (engine/schedules.py). ``refuse`` (the tick's sender-identity check) says
    why a due campaign must not launch now; it is asked only about a fire that would launch,
    so the refusal is repeated at each tick while it holds, and the fire launches at the first
    tick after it is lifted (a cron fire only while within the grace; a one-off however late).
    """
    at = ensure_utc(at)
    _serialise(session, "launch_due")
    results: list[DueLaunch] = []
    for loaded in definitions:
        definition = loaded.definition
        schedule = definition.schedule
        if schedule is None:
            continue
        key, not_now = fire_key(definition, at)
        if key is None or not_now is not None:
            continue
        if _existing_run(session, definition.name, key) is not None:
            continue
        if schedule.cron is not None:
            try:
                with session.begin_nested():
                    skipped = _skipped(session, definition, key, at=at, grace=grace)
            except EngineError as exc:
                results.append(DueLaunch(definition.name, error=str(exc)))
                continue
            if skipped is not False:
                if skipped is not None:
                    results.append(DueLaunch(definition.name, skipped=skipped))
                continue
        refusal = refuse(definition) if refuse is not None else None
        if refusal is not None:
            results.append(DueLaunch(definition.name, refused=refusal))
            continue
        try:
            with session.begin_nested():
                result = launch(session, loaded, at=at, global_cap=global_cap)
        except EngineError as exc:
            results.append(DueLaunch(definition.name, error=str(exc)))
            continue
        results.append(DueLaunch(definition.name, result=result))
    return results


def _skipped(
    session: Session, definition: CampaignDefinition, key: str, *, at: datetime, grace: timedelta
) -> str | Literal[False] | None:
    """False: launch this fire. Otherwise it is skipped: the message when the skip is new,
    None when it was reported before."""
    fire = datetime.fromisoformat(key)
    seen = first_seen(session, definition, at=at)
    reason = skip_reason(fire, at=at, first_seen=seen, grace=grace)
    if reason is None:
        return False
    if not record_skip(session, definition.name, fire=fire, key=key, at=at, reason=reason):
        return None
    timezone = definition.schedule.timezone if definition.schedule else None
    return f"skipped fire {local_fire(fire, timezone)} of {definition.name}: {reason}"


__all__ = [
    "BUILT_IN_REASONS",
    "CONSENT_REQUIRED",
    "DEFAULT_MISFIRE_GRACE",
    "DueLaunch",
    "ExclusionCheck",
    "ExclusionCount",
    "Explanation",
    "GlobalCap",
    "LaunchResult",
    "PlanReport",
    "SampleMember",
    "StepVolume",
    "explain",
    "fire_key",
    "holdout_bucket_sql",
    "latest_fire_time",
    "launch",
    "launch_due",
    "plan",
    "resolve_at",
    "usable_sql",
]
