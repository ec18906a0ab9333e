"""One Settings object, read once at start-up by the composition root.

Values come from environment variables (``CAMPAIGN_*`` plus the providers' own names such as
``SENDGRID_API_KEY``) and, below them in priority, from an optional ``campaign.toml`` in the
working folder whose keys are the same names in lower case without the prefix
(``database_url = "..."``).
"""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from engine.definitions.durations import Duration, FineDuration
from engine.errors import ConfigError

SETTINGS_FILE = "campaign.toml"
# The demo's sender identity: the defaults, so the demo runs anywhere; a real program's email
# campaigns are refused until both are set (engine/sender_identity.py).
DEMO_EMAIL_FROM = "Rewards Team <rewards@example.com>"
DEMO_POSTAL_ADDRESS = "Example Rewards, 100 Main Street, Springfield, IL 62701, USA"


def _provider_alias(env_name: str, field_name: str) -> Any:
    return Field(default=None, validation_alias=AliasChoices(env_name, field_name))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CAMPAIGN_", extra="forbid", populate_by_name=True, frozen=True
    )

    database_url: str = "sqlite:///campaign.db"
    default_timezone: str = "America/New_York"
    default_region: str = "US"
    email_from: str = DEMO_EMAIL_FROM
    postal_address: str = DEMO_POSTAL_ADDRESS
    public_url: str = "http://127.0.0.1:8000"
    secret_key: str | None = None
    # Rendered contents and addresses of settled messages older than this are emptied by the
    # tick (engine/retention.py); the rows and every report count stay.
    message_retention_days: int = Field(default=90, ge=1)
    # The caller log's MAC key (engine/calls/log_key.py): never stored in the database. Either
    # the key itself (at least 32 characters) or a file holding it; unset, a key file is made
    # on first use beside a SQLite database, else in ~/.config/campaign-engine/.
    caller_log_key: str | None = Field(default=None, min_length=32)
    caller_log_key_file: Path | None = None
    outbox_dir: Path = Path("outbox")
    campaigns_dir: Path = Path("campaigns")
    templates_dir: Path = Path("templates")
    # Report subscriptions (engine/subscriptions/): reports/*.yaml, delivered by the tick. A
    # fire later than the grace is skipped and listed; a failed delivery is tried again after
    # report_retry_delay, doubling each time, report_max_attempts times in all.
    reports_dir: Path = Path("reports")
    report_delivery_grace: Duration = timedelta(days=1)
    report_retry_delay: FineDuration = timedelta(minutes=5)
    report_max_attempts: int = Field(default=5, ge=1)
    # Program-specific call dispositions added to the standard set (engine/calls/config.py).
    dispositions_file: Path | None = None
    # Service levels per case category and the root-cause list (engine/cases/config.py).
    cases_file: Path | None = None
    # An agent-only callback nobody claimed this many BUSINESS hours past its time (program
    # clock) is served to the agent's team too; at once when the agent is disabled.
    callback_fallback_after: Duration = timedelta(hours=1)
    # A member's call task is served first to agents who speak their language; agents who do
    # not (but have languages set) get it this long after it became callable. 0: no wait.
    language_routing_wait: Duration = timedelta(minutes=15)
    # Global frequency cap: at most this many contacts (all campaigns, all channels) per
    # participant in any rolling window of this length; a campaign's own cap can only be
    # stricter. CAMPAIGN_FREQUENCY_CAP_PER takes a duration such as '7d'.
    frequency_cap_max: int = Field(default=4, ge=1)
    frequency_cap_per: Duration = timedelta(days=7)
    # Sending (engine/sending/). Rates are messages per second per channel and sender (the
    # From address; the messaging service, else sms_from). PostgreSQL: shared by every
    # dispatcher on the database (engine/sending/shared_ratelimit.py); SQLite: the one dispatcher's,
    # shared by its workers. 1 SMS/s is what a Twilio long code sustains; raise it for a
    # toll-free number, a short code or a messaging service with a pool of senders.
    dispatch_email_rate: float = Field(default=100.0, gt=0)
    dispatch_sms_rate: float = Field(default=1.0, gt=0)
    dispatch_batch_size: int = Field(default=500, ge=1, le=1000)
    # Requests a dispatcher worker keeps waiting for a slow provider at once
    # (engine/sending/in_flight.py): at 100 ms an answer, 16 carry 160 messages/s; the rate
    # limit still paces them.
    dispatch_max_in_flight: int = Field(default=16, ge=1, le=256)
    dispatch_lease: FineDuration = timedelta(minutes=10)
    dispatch_max_attempts: int = Field(default=5, ge=1)
    dispatch_retry_delay: FineDuration = timedelta(minutes=1)
    dispatch_pause_after_failures: int = Field(default=20, ge=1)
    # The tick and the scheduler daemon (engine/tick.py, engine/scheduler.py). A cron tick's
    # default time budget fits a once-a-minute crontab; the daemon ticks every interval and
    # still fires a cron launch that is up to misfire_grace late (after a restart, say).
    tick_budget_seconds: float = Field(default=50.0, gt=0)
    tick_interval_seconds: float = Field(default=60.0, gt=0)
    scheduler_misfire_grace_seconds: int = Field(default=3600, ge=1)
    # Processes rendering messages when a step is materialised for many members at once
    # (0 = one per core, at most 4; 1 = render in the sequencer's own process).
    render_workers: int = Field(default=0, ge=0, le=32)

    sendgrid_api_key: str | None = _provider_alias("SENDGRID_API_KEY", "sendgrid_api_key")
    sendgrid_host: str = "https://api.sendgrid.com"
    sendgrid_webhook_public_key: str | None = _provider_alias(
        "SENDGRID_WEBHOOK_PUBLIC_KEY", "sendgrid_webhook_public_key"
    )
    # A signed SendGrid event whose timestamp is further than this from now is refused
    # (a captured request replayed later).
    webhook_timestamp_tolerance: int = Field(default=300, ge=1)
    # The shared secret a program's own systems send (Authorization: Bearer ...) to push
    # activity events to POST /webhooks/events; unset, that endpoint refuses every request.
    events_webhook_token: str | None = None
    # When set, GET /metrics of `campaign serve` asks for it (Authorization: Bearer ...);
    # unset, /metrics answers anyone who reaches the server (docs/operations.md).
    metrics_token: str | None = None
    twilio_account_sid: str | None = _provider_alias("TWILIO_ACCOUNT_SID", "twilio_account_sid")
    twilio_auth_token: str | None = _provider_alias("TWILIO_AUTH_TOKEN", "twilio_auth_token")
    twilio_messaging_service_sid: str | None = _provider_alias(
        "TWILIO_MESSAGING_SERVICE_SID", "twilio_messaging_service_sid"
    )
    sms_from: str | None = None
    twilio_base_url: str = "https://api.twilio.com"

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA timezone {value!r}") from exc
        return value

    @field_validator("events_webhook_token", "metrics_token")
    @classmethod
    def _strong_token(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None  # an empty variable means unset: the endpoint stays closed
        if len(value.strip()) < 16:
            raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 32`)")
        return value.strip()

    @field_validator("database_url")
    @classmethod
    def _normalise_postgres_url(cls, value: str) -> str:
        # A bare postgresql:// URL would make SQLAlchemy look for psycopg2; we ship psycopg 3.
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            return "postgresql+psycopg://" + value.split("://", 1)[1]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(folder: Path | None = None, **overrides: Any) -> Settings:
    """Read settings once: explicit overrides > environment > campaign.toml > defaults."""
    file_values: dict[str, Any] = {}
    path = (folder or Path.cwd()) / SETTINGS_FILE
    if path.exists():
        try:
            file_values = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        from_env = Settings(**overrides)
        # Keys present in the environment win over the file; the file fills the rest.
        merged = {**file_values, **from_env.model_dump(exclude_unset=True), **overrides}
        return Settings(**merged) if file_values else from_env
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path if file_values else None)) from exc


def _describe(exc: ValidationError, path: Path | None) -> str:
    where = f" (environment or {path})" if path else " (environment)"
    lines = [f"invalid settings{where}:"]
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        lines.append(f"  {field}: {error['msg']}")
    return "\n".join(lines)
