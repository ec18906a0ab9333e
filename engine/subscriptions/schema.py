"""The schema of a report subscription file (``reports/<name>.yaml``), pure like the campaign
schema: every model forbids unknown keys and is frozen; errors are ``definition_error`` so
the loader reports them at their file and line (engine/subscriptions/loader.py).

docs/report-subscriptions.md is the human reference.
"""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from engine.definitions.schema import SLUG, definition_error

REPORTS = ("campaign", "retention", "agents", "complaints", "deliverability")
PERIODS = ("last_calendar_month", "last_week", "month_to_date")
FORMATS = ("html", "csv")
LANGUAGES = ("en", "zh")
# "last calendar month" as people write it is the same period as last_calendar_month.
_PERIOD_SPELLINGS = {p.replace("_", " "): p for p in PERIODS} | {
    p.replace("_", "-"): p for p in PERIODS
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _slug(value: str | None, what: str) -> str | None:
    if value is not None and not SLUG.match(value):
        raise definition_error(f"{value!r} is not a {what} name (lower case, digits, '-')")
    return value


class ReportSection(_Model):
    """One report of the delivery, with its filters. ``campaign`` is required for the
    campaign results report and narrows the others; ``program`` defaults to the
    subscription's."""

    report: Literal["campaign", "retention", "agents", "complaints", "deliverability"]
    campaign: str | None = None
    program: str | None = None
    agent: str | None = None
    event: str = "renewal"  # retention: the goal event that means renewed
    by: Literal["day", "week", "month"] = "week"  # complaints: the time bucket

    @field_validator("campaign")
    @classmethod
    def _campaign(cls, value: str | None) -> str | None:
        return _slug(value, "campaign")

    @model_validator(mode="after")
    def _check(self) -> ReportSection:
        if self.report == "campaign" and self.campaign is None:
            raise definition_error(
                "the campaign results report needs campaign: NAME (the campaign file's name)"
            )
        if self.agent is not None and self.report != "agents":
            raise definition_error("agent: narrows the agents report only", at=("agent",))
        return self


class SubscriptionSchedule(_Model):
    """A 5-field crontab; in ``timezone``, else in the program's zone."""

    cron: str
    timezone: str | None = None

    @model_validator(mode="after")
    def _check(self) -> SubscriptionSchedule:
        if self.timezone is not None:
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise definition_error(
                    f"{self.timezone!r} is not an IANA timezone; use e.g. Europe/London",
                    at=("timezone",),
                ) from exc
        from engine.fire_times import LocalCron

        try:
            LocalCron(self.cron, "UTC")
        except ValueError as exc:
            raise definition_error(
                f"{self.cron!r} is not a 5-field crontab ({exc}); use e.g. '0 7 1 * *' "
                "(07:00 on the first of every month)",
                at=("cron",),
            ) from exc
        return self


def recipient_address(value: object) -> str:
    if not isinstance(value, str):
        raise definition_error(f"expected an email address, got {value!r}")
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise definition_error(f"{value!r} is not an email address ({exc})") from exc


class Subscription(_Model):
    """A report subscription: which reports, for which period, to whom, when."""

    name: str
    description: str | None = None
    program: str | None = None
    reports: list[ReportSection] = Field(min_length=1)
    period: str = "last_calendar_month"
    format: list[Literal["html", "csv"]] = Field(default=["html", "csv"], min_length=1)
    language: Literal["en", "zh"] = "en"
    recipients: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    subject: str | None = None
    schedule: SubscriptionSchedule

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        result = _slug(value, "subscription")
        assert result is not None
        return result

    @field_validator("program")
    @classmethod
    def _program(cls, value: str | None) -> str | None:
        return _slug(value, "program")

    @field_validator("period", mode="before")
    @classmethod
    def _period(cls, value: object) -> object:
        if isinstance(value, str):
            text = " ".join(value.strip().lower().split())
            found = _PERIOD_SPELLINGS.get(text) or (text if text in PERIODS else None)
            if found is None:
                raise definition_error(
                    f"{value!r} is not a period; expected one of {', '.join(PERIODS)}"
                )
            return found
        return value

    @field_validator("recipients", mode="before")
    @classmethod
    def _recipients(cls, value: object) -> object:
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list):
            return value
        normalised = []
        for index, item in enumerate(values):
            try:
                normalised.append(recipient_address(item))
            except PydanticCustomError as exc:
                message = str((exc.context or {}).get("message", exc))
                raise definition_error(message, at=(index,)) from exc
        return normalised


__all__ = [
    "FORMATS",
    "LANGUAGES",
    "PERIODS",
    "REPORTS",
    "ReportSection",
    "Subscription",
    "SubscriptionSchedule",
]
