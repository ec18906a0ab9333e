"""The schema of a campaign definition file (``campaigns/<name>.yaml``).

Every model forbids unknown keys (a typo must never be silently ignored) and is frozen: a
loaded definition is a value, stored with its source text and hash when a run is launched.
docs/campaign-format.md is the human reference; tests/definitions/test_docs.py keeps the two
in step.

Errors raised here are ``PydanticCustomError("definition", ...)`` whose context may carry
``at``: a path (relative to the model that failed) to the key the message is about, so the
loader can point at that key's line instead of the line of the whole mapping.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from engine.definitions.durations import Duration
from engine.definitions.filters import ATTRIBUTE_PREFIX, PARTICIPANT_FIELDS, Filter

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")
TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
SENDGRID_TEMPLATE = re.compile(r"^sendgrid:d-[0-9a-f]{32}$")
EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CHANNELS = ("email", "sms", "call")
CONDITIONS = (
    "not_converted",
    "not_reached_by_phone",
    "email_not_opened",
    "email_not_clicked",
    "no_reply",
)
# Member date fields a step may be timed to go before (``expires_before``).
DEADLINE_FIELDS = ("renewal_date", "points_expire_at")
# How long an email or SMS may wait after its step came due before it is skipped as expired.
DEFAULT_EXPIRES_AFTER = timedelta(days=3)
# Audience fields whose conditions are re-checked before each send and claim by default.
DEFAULT_STANDING = ("status",)
# Fields that only mean something on a call step.
CALL_ONLY_FIELDS = (
    "script",
    "team",
    "priority",
    "max_attempts",
    "talking_points",
    "offer",
    "cross_sell",
)

Channel = Literal["email", "sms", "call"]
Condition = Literal[
    "not_converted",
    "not_reached_by_phone",
    "email_not_opened",
    "email_not_clicked",
    "no_reply",
]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_ALL_DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def definition_error(message: str, *, at: Sequence[str | int] = ()) -> PydanticCustomError:
    """A validation error whose message is ours, optionally pointing at a key below the model."""
    # The message travels in the context so braces in user input are never formatted.
    return PydanticCustomError("definition", "{message}", {"message": message, "at": tuple(at)})


_HH_MM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_time_of_day(value: Any) -> time:
    """'HH:MM' (24-hour) as a time; a time object passes through."""
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        match = _HH_MM.match(value.strip())
        if match:
            return time(int(match.group(1)), int(match.group(2)))
    raise definition_error(f"{value!r} is not a time of day; use 24-hour HH:MM, e.g. '09:00'")


TimeOfDay = Annotated[
    time,
    BeforeValidator(parse_time_of_day),
    PlainSerializer(lambda value: value.strftime("%H:%M"), return_type=str),
]


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Goal(_Model):
    """What counts as a conversion: any of ``events`` within ``window`` of enrollment."""

    events: list[str] = Field(min_length=1)
    window: Duration

    @field_validator("events")
    @classmethod
    def _event_names(cls, value: list[str]) -> list[str]:
        for index, name in enumerate(value):
            if not EVENT_NAME.match(name):
                raise definition_error(
                    f"{name!r} is not an event type name; use lower case letters, digits and _,"
                    " e.g. login, redemption",
                    at=(index,),
                )
        if len(set(value)) != len(value):
            raise definition_error("event types are listed twice")
        return value

    @field_validator("window")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise definition_error("the attribution window must be longer than 0, e.g. 30d")
        return value


class Schedule(_Model):
    """When runs launch: once, from ``start`` on; or recurring by ``cron`` in ``timezone``."""

    start: AwareDatetime | None = None
    cron: str | None = None
    timezone: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Schedule:
        if (self.start is None) == (self.cron is None):
            raise definition_error(
                "give exactly one of start (a one-off launch time) or cron (a recurring schedule)"
            )
        if self.start is not None and self.timezone is not None:
            raise definition_error(
                "timezone goes with cron; give start with its UTC offset instead,"
                " e.g. 2026-12-01T10:00:00-05:00",
                at=("timezone",),
            )
        if self.cron is not None:
            if self.timezone is None:
                raise definition_error(
                    "a cron schedule needs timezone (an IANA zone, e.g. America/New_York)"
                )
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise definition_error(
                    f"{self.timezone!r} is not an IANA timezone; use e.g. America/New_York",
                    at=("timezone",),
                ) from exc
            try:
                self.trigger()
            except ValueError as exc:
                raise definition_error(
                    f"{self.cron!r} is not a 5-field crontab ({exc}); use e.g. '0 9 * * MON'"
                    " (minute hour day month weekday)",
                    at=("cron",),
                ) from exc
        return self

    def trigger(self) -> Any:
        """The APScheduler trigger of a recurring schedule (None for a one-off): a CronTrigger
        that fires once per local calendar fire on DST days (engine/fire_times.py)."""
        if self.cron is None or self.timezone is None:
            return None
        from engine.fire_times import LocalCronTrigger

        return LocalCronTrigger(self.cron, self.timezone)

    @property
    def recurring(self) -> bool:
        return self.cron is not None


class ReentryAfter(_Model):
    """Re-entry allowed once ``after`` has passed since the participant's last enrollment."""

    after: Duration

    @field_validator("after")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise definition_error("re-entry needs a positive duration, e.g. 90d")
        return value


def _reentry_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "once"
    if isinstance(value, dict | ReentryAfter):
        return "after"
    return None


ReentryRule = Annotated[
    Union[  # noqa: UP007
        Annotated[Literal["once"], Tag("once")],
        Annotated[ReentryAfter, Tag("after")],
    ],
    Discriminator(
        _reentry_kind,
        custom_error_type="reentry_kind",
        custom_error_message="reentry is 'once' or {after: DURATION}, e.g. {after: 90d}",
    ),
]
"""``"once"`` (a participant enters the campaign once, ever) or ``ReentryAfter``."""


class FrequencyCap(_Model):
    """At most ``max`` contacts (across ALL campaigns) per participant in any rolling ``per``."""

    max: int = Field(ge=1)
    per: Duration

    @field_validator("per")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise definition_error("the cap window must be longer than 0, e.g. 7d")
        return value


class TimeWindow(_Model):
    """Local hours (recipient's zone) on given weekdays; narrows the built-in legal window."""

    start: TimeOfDay
    end: TimeOfDay
    days: list[Weekday] = Field(default_factory=lambda: list(_ALL_DAYS), min_length=1)

    @field_validator("days", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [day.lower() if isinstance(day, str) else day for day in value]
        return value

    @model_validator(mode="after")
    def _check(self) -> TimeWindow:
        if self.start >= self.end:
            raise definition_error(
                f"start {self.start:%H:%M} must be before end {self.end:%H:%M}", at=("end",)
            )
        if len(set(self.days)) != len(self.days):
            raise definition_error("a day is listed twice", at=("days",))
        return self


class FollowUp(_Model):
    """The follow-up service standard of the campaign's calls: a no-contact outcome is tried
    again within ``within`` business hours (Monday-Friday 09:00-17:00, program zone), and a
    call task is not closed as unreachable before ``min_attempts`` attempts."""

    within: Duration = timedelta(hours=8)
    min_attempts: int = Field(default=2, ge=1, le=20)

    @field_validator("within")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise definition_error("the follow-up allowance must be longer than 0, e.g. 8h")
        return value


class CallingPlan(_Model):
    """The campaign's outbound call targets (all agents together) per day, week (Monday to
    Sunday) and month; a target left out is not tracked."""

    daily: int | None = Field(default=None, ge=0)
    weekly: int | None = Field(default=None, ge=0)
    monthly: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _some(self) -> CallingPlan:
        if self.daily is None and self.weekly is None and self.monthly is None:
            raise definition_error("give at least one of daily, weekly, monthly")
        return self


class Variant(_Model):
    """One arm of an A/B test on a step: its own template, chosen with probability by weight."""

    name: str
    template: str
    weight: int = Field(default=1, gt=0)

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not TEMPLATE_NAME.match(value):
            raise definition_error(
                f"{value!r} is not a variant name; use lower case letters, digits, - or _"
            )
        return value

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        return _check_template_name(value)


class PriorityKey(_Model):
    """One ordering key of a call list: a participant field, ascending or descending."""

    field: str
    order: Literal["asc", "desc"] = "asc"

    @field_validator("field")
    @classmethod
    def _known(cls, value: str) -> str:
        if value in PARTICIPANT_FIELDS or (
            value.startswith(ATTRIBUTE_PREFIX) and len(value) > len(ATTRIBUTE_PREFIX)
        ):
            return value
        known = ", ".join(sorted(PARTICIPANT_FIELDS))
        raise definition_error(f"unknown field {value!r}; use one of {known} or attributes.NAME")


def _check_template_name(value: str) -> str:
    if TEMPLATE_NAME.match(value) or SENDGRID_TEMPLATE.match(value):
        return value
    if value.startswith("sendgrid:"):
        raise definition_error(
            f"{value!r} is not a SendGrid dynamic template id; use sendgrid:d-<32 hex digits>"
        )
    raise definition_error(
        f"{value!r} is not a template name; use the file name without folder or extension"
        " (lower case letters, digits, - or _), e.g. winback for templates/email/winback.*.j2"
    )


class Step(_Model):
    """One contact in the sequence: an email, an SMS or a call task, after ``delay``."""

    id: str
    channel: Channel
    template: str | None = None
    variants: list[Variant] | None = None
    delay: Duration = timedelta(0)
    at: TimeOfDay | None = None
    condition: Annotated[list[Condition], BeforeValidator(_one_or_many)] = Field(
        default_factory=list
    )
    script: str | None = None
    team: str | None = None
    priority: list[PriorityKey] = Field(default_factory=list)
    max_attempts: int = Field(default=3, ge=1, le=20)
    talking_points: list[str] = Field(default_factory=list)
    offer: str | None = None
    cross_sell: str | None = None
    # Deadlines: skipped as ``expired`` once past (see engine/sending/deadlines.py).
    expires_after: Duration | None = None
    expires_before: str | None = None
    # A hard limit: an SMS rendered longer is not queued (``over_segment_limit``).
    sms_max_segments: int | None = Field(default=None, ge=1, le=10)

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.match(value):
            raise definition_error(
                f"{value!r} is not a step id; use lower case letters, digits and -, e.g. email-1"
            )
        return value

    @field_validator("template", "script")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        return None if value is None else _check_template_name(value)

    @field_validator("delay")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise definition_error("delay cannot be negative")
        return value

    @field_validator("expires_after")
    @classmethod
    def _positive_deadline(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise definition_error("expires_after must be longer than 0, e.g. 3d")
        return value

    @field_validator("expires_before")
    @classmethod
    def _deadline_field(cls, value: str | None) -> str | None:
        if value is not None and value not in DEADLINE_FIELDS:
            raise definition_error(
                f"expires_before takes a member date field: {' or '.join(DEADLINE_FIELDS)},"
                f" not {value!r}"
            )
        return value

    @property
    def deadline_after(self) -> timedelta | None:
        """How long after it came due the step may still go: ``expires_after``, else 3 days
        for an email or SMS; a call step without ``expires_after`` has no such limit."""
        if self.expires_after is not None:
            return self.expires_after
        return None if self.channel == "call" else DEFAULT_EXPIRES_AFTER

    @model_validator(mode="after")
    def _by_channel(self) -> Step:
        if self.sms_max_segments is not None and self.channel != "sms":
            raise definition_error(
                "sms_max_segments is only for SMS steps", at=("sms_max_segments",)
            )
        if self.channel == "call":
            for key in ("template", "variants"):
                if key in self.model_fields_set:
                    raise definition_error(
                        f"call steps take script (templates/calls/<script>.txt.j2), not {key}",
                        at=(key,),
                    )
            if self.script is None:
                raise definition_error(
                    "call steps need script: the call script name (templates/calls/<name>.txt.j2)"
                )
            return self
        for key in CALL_ONLY_FIELDS:
            if key in self.model_fields_set:
                raise definition_error(f"{key} is only for call steps", at=(key,))
        if self.template is not None and self.variants is not None:
            raise definition_error(
                "give either template or variants (an A/B test), not both", at=("variants",)
            )
        if self.template is None and self.variants is None:
            raise definition_error(f"{self.channel} steps need template (or variants for A/B)")
        if self.variants is not None:
            if len(self.variants) < 2:
                raise definition_error(
                    "an A/B test needs at least two variants; use template for one",
                    at=("variants",),
                )
            seen: set[str] = set()
            for index, variant in enumerate(self.variants):
                if variant.name in seen:
                    raise definition_error(
                        f"variant name {variant.name!r} is used twice",
                        at=("variants", index, "name"),
                    )
                seen.add(variant.name)
        if self.channel == "sms":
            for index, name in enumerate(self.templates):
                if SENDGRID_TEMPLATE.match(name):
                    where: tuple[str | int, ...] = (
                        ("template",) if self.template else ("variants", index, "template")
                    )
                    raise definition_error("SendGrid templates are for email steps", at=where)
        return self

    @property
    def templates(self) -> list[str]:
        """Every template name this step may use (the variants' or the one template)."""
        if self.variants is not None:
            return [variant.template for variant in self.variants]
        return [self.template] if self.template is not None else []


_CONDITION_NEEDS: dict[str, tuple[set[str], str]] = {
    "email_not_opened": ({"email"}, "an earlier email step"),
    "email_not_clicked": ({"email"}, "an earlier email step"),
    "not_reached_by_phone": ({"call"}, "an earlier call step"),
    "no_reply": ({"email", "sms"}, "an earlier email or SMS step"),
}


class CampaignDefinition(_Model):
    """A whole campaign: who (audience, exclusions, holdout), why (goal), when (schedule,
    windows, caps, re-entry) and what (steps)."""

    name: str
    description: str = ""
    program: str | None = None
    audience: Filter
    exclusions: list[Filter] = Field(default_factory=list)
    holdout_percent: Decimal = Field(default=Decimal(10), ge=0, le=50, decimal_places=2)
    goal: Goal
    schedule: Schedule | None = None
    reentry: ReentryRule = "once"
    frequency_cap: FrequencyCap | None = None
    send_window: TimeWindow | None = None
    call_window: TimeWindow | None = None
    follow_up: FollowUp | None = None
    calling_plan: CallingPlan | None = None
    sms_max_segments: int = Field(default=2, ge=1, le=10)
    # Audience fields whose conditions are checked again before each send and claim.
    standing: list[str] = Field(default_factory=lambda: list(DEFAULT_STANDING))
    steps: list[Step] = Field(min_length=1)

    @field_validator("standing")
    @classmethod
    def _standing_fields(cls, value: list[str]) -> list[str]:
        for index, name in enumerate(value):
            if name in PARTICIPANT_FIELDS or (
                name.startswith(ATTRIBUTE_PREFIX) and len(name) > len(ATTRIBUTE_PREFIX)
            ):
                continue
            known = ", ".join(sorted(PARTICIPANT_FIELDS))
            raise definition_error(
                f"unknown field {name!r}; use one of {known} or attributes.NAME", at=(index,)
            )
        return value

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.match(value):
            raise definition_error(
                f"{value!r} is not a campaign name; use lower case letters, digits and -,"
                " e.g. winback-inactive"
            )
        return value

    @field_validator("program")
    @classmethod
    def _program_key(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[a-z0-9][a-z0-9_-]{0,63}$", value):
            raise definition_error(f"{value!r} is not a program key, e.g. demo")
        return value

    @model_validator(mode="after")
    def _steps(self) -> CampaignDefinition:
        seen: dict[str, int] = {}
        earlier: set[str] = set()
        for index, step in enumerate(self.steps):
            if step.id in seen:
                raise definition_error(
                    f"step id {step.id!r} is already used by steps[{seen[step.id]}]",
                    at=("steps", index, "id"),
                )
            seen[step.id] = index
            for condition in step.condition:
                needs = _CONDITION_NEEDS.get(condition)
                if needs is not None and not needs[0] & earlier:
                    raise definition_error(
                        f"condition {condition} needs {needs[1]}",
                        at=("steps", index, "condition"),
                    )
            earlier.add(step.channel)
        if "call" not in earlier:
            for key in ("follow_up", "calling_plan"):
                if getattr(self, key) is not None:
                    raise definition_error(
                        f"{key} is about call steps and this campaign has none", at=(key,)
                    )
        return self

    @property
    def channels(self) -> frozenset[str]:
        """The channels the steps use, e.g. {'email', 'call'}."""
        return frozenset(step.channel for step in self.steps)

    @property
    def reentry_after(self) -> timedelta | None:
        """None when a participant may enter once ever; else the minimum gap between entries."""
        return self.reentry.after if isinstance(self.reentry, ReentryAfter) else None

    def step(self, step_id: str) -> Step:
        """The step with this id (KeyError if none)."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


__all__ = [
    "CHANNELS",
    "CONDITIONS",
    "DEADLINE_FIELDS",
    "DEFAULT_EXPIRES_AFTER",
    "DEFAULT_STANDING",
    "WEEKDAYS",
    "CallingPlan",
    "CampaignDefinition",
    "Channel",
    "Condition",
    "FollowUp",
    "FrequencyCap",
    "Goal",
    "PriorityKey",
    "ReentryAfter",
    "ReentryRule",
    "Schedule",
    "Step",
    "TimeWindow",
    "Variant",
]
