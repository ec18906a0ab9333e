"""One Settings object, read once at start-up by the composition root.

Values come from environment variables (``CAMPAIGN_*`` plus the providers' own names such as
``SENDGRID_API_KEY``) and, below them in priority, from an optional ``campaign.toml`` in the
working folder whose keys are the same names in lower case without the prefix
(``database_url = "..."``).

Every command reads them at start-up, so this is a plain class checked by the few rules in
engine/settings_fields.py, not a pydantic model (about 100 ms a command, #18). The
environment names are the ones pydantic-settings read: ``CAMPAIGN_`` + the field name, in any
case; a provider's own name (``SENDGRID_API_KEY``) first where the field has one.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.errors import ConfigError
from engine.settings_fields import (
    Invalid,
    Setting,
    SettingsError,
    duration,
    from_environment,
    integer,
    number,
    optional,
    path,
    setting,
    text,
)

SETTINGS_FILE = "campaign.toml"
ENV_PREFIX = "CAMPAIGN_"
# The demo's sender identity: the defaults, so the demo runs anywhere; a real program's email
# campaigns are refused until both are set (engine/sender_identity.py).
DEMO_EMAIL_FROM = "Rewards Team <rewards@example.com>"
DEMO_POSTAL_ADDRESS = "Example Rewards, 100 Main Street, Springfield, IL 62701, USA"


def _provider_alias(env_name: str) -> Any:
    return optional(text, aliases=(env_name,))


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA timezone {value!r}") from exc
    return value


def _strong_token(value: str) -> str | None:
    if not value.strip():
        return None  # an empty variable means unset: the endpoint stays closed
    if len(value.strip()) < 16:
        raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 32`)")
    return value.strip()


def _normalise_postgres_url(value: str) -> str:
    # A bare postgresql:// URL would make SQLAlchemy look for psycopg2; we ship psycopg 3.
    if value.startswith("postgresql://") or value.startswith("postgres://"):
        return "postgresql+psycopg://" + value.split("://", 1)[1]
    return value


class Settings:
    """Frozen settings. ``Settings(**values)`` reads the environment too, and the values given
    win over it (tests and embedders pass some); `load_settings` adds campaign.toml."""

    database_url: str = setting("sqlite:///campaign.db", text, check=_normalise_postgres_url)
    default_timezone: str = setting("America/New_York", text, check=_known_zone)
    default_region: str = setting("US", text)
    email_from: str = setting(DEMO_EMAIL_FROM, text)
    postal_address: str = setting(DEMO_POSTAL_ADDRESS, text)
    public_url: str = setting("http://127.0.0.1:8000", text)
    secret_key: str | None = optional(text)
    # Rendered contents and addresses of settled messages older than this are emptied by the
    # tick (engine/retention.py); the rows and every report count stay.
    message_retention_days: int = setting(90, integer, ge=1)
    # The caller log's MAC key (engine/calls/log_key.py): never stored in the database. Either
    # the key itself (at least 32 characters) or a file holding it; unset, a key file is made
    # on first use beside a SQLite database, else in ~/.config/campaign-engine/.
    caller_log_key: str | None = optional(text, min_length=32)
    caller_log_key_file: Path | None = optional(path)
    outbox_dir: Path = setting(Path("outbox"), path)
    campaigns_dir: Path = setting(Path("campaigns"), path)
    templates_dir: Path = setting(Path("templates"), path)
    # Report subscriptions (engine/subscriptions/): reports/*.yaml, delivered by the tick. A
    # fire later than the grace is skipped and listed; a failed delivery is tried again after
    # report_retry_delay, doubling each time, report_max_attempts times in all.
    reports_dir: Path = setting(Path("reports"), path)
    report_delivery_grace: timedelta = duration(timedelta(days=1))
    report_retry_delay: timedelta = duration(timedelta(minutes=5), seconds=True)
    report_max_attempts: int = setting(5, integer, ge=1)
    # Program-specific call dispositions added to the standard set (engine/calls/config.py).
    dispositions_file: Path | None = optional(path)
    # The reasons an agent may pause with (engine/calls/pauses.py), a comma list.
    pause_codes: str = setting("break,training,meeting", text)
    # Service levels per case category and the root-cause list (engine/cases/config.py).
    cases_file: Path | None = optional(path)
    # An agent-only callback nobody claimed this many BUSINESS hours past its time (program
    # clock) is served to the agent's team too; at once when the agent is disabled.
    callback_fallback_after: timedelta = duration(timedelta(hours=1))
    # A member's call task is served first to agents who speak their language; agents who do
    # not (but have languages set) get it this long after it became callable. 0: no wait.
    language_routing_wait: timedelta = duration(timedelta(minutes=15))
    # Global frequency cap: at most this many contacts (all campaigns, all channels) per
    # participant in any rolling window of this length; a campaign's own cap can only be
    # stricter. CAMPAIGN_FREQUENCY_CAP_PER takes a duration such as '7d'.
    frequency_cap_max: int = setting(4, integer, ge=1)
    frequency_cap_per: timedelta = duration(timedelta(days=7))
    # Sending (engine/sending/). Rates are messages per second per channel and sender (the
    # From address; the messaging service, else sms_from). PostgreSQL: shared by every
    # dispatcher on the database (engine/sending/shared_ratelimit.py); SQLite: the one dispatcher's,
    # shared by its workers. 1 SMS/s is what a Twilio long code sustains; raise it for a
    # toll-free number, a short code or a messaging service with a pool of senders.
    dispatch_email_rate: float = setting(100.0, number, gt=0)
    dispatch_sms_rate: float = setting(1.0, number, gt=0)
    dispatch_batch_size: int = setting(500, integer, ge=1, le=1000)
    # Requests a dispatcher worker keeps waiting for a slow provider at once
    # (engine/sending/in_flight.py): at 100 ms an answer, 16 carry 160 messages/s; the rate
    # limit still paces them.
    dispatch_max_in_flight: int = setting(16, integer, ge=1, le=256)
    dispatch_lease: timedelta = duration(timedelta(minutes=10), seconds=True)
    dispatch_max_attempts: int = setting(5, integer, ge=1)
    dispatch_retry_delay: timedelta = duration(timedelta(minutes=1), seconds=True)
    dispatch_pause_after_failures: int = setting(20, integer, ge=1)
    # The tick and the scheduler daemon (engine/tick.py, engine/scheduler.py). A cron tick's
    # default time budget fits a once-a-minute crontab; the daemon ticks every interval and
    # still fires a cron launch that is up to misfire_grace late (after a restart, say).
    tick_budget_seconds: float = setting(50.0, number, gt=0)
    tick_interval_seconds: float = setting(60.0, number, gt=0)
    scheduler_misfire_grace_seconds: int = setting(3600, integer, ge=1)
    # Processes rendering messages when a step is materialised for many members at once
    # (0 = one per core, at most 4; 1 = render in the sequencer's own process).
    render_workers: int = setting(0, integer, ge=0, le=32)

    sendgrid_api_key: str | None = _provider_alias("SENDGRID_API_KEY")
    sendgrid_host: str = setting("https://api.sendgrid.com", text)
    sendgrid_webhook_public_key: str | None = _provider_alias("SENDGRID_WEBHOOK_PUBLIC_KEY")
    # A signed SendGrid event whose timestamp is further than this from now is refused
    # (a captured request replayed later).
    webhook_timestamp_tolerance: int = setting(300, integer, ge=1)
    # The shared secret a program's own systems send (Authorization: Bearer ...) to push
    # activity events to POST /webhooks/events; unset, that endpoint refuses every request.
    events_webhook_token: str | None = optional(text, check=_strong_token)
    # When set, GET /metrics of `campaign serve` asks for it (Authorization: Bearer ...);
    # unset, /metrics answers anyone who reaches the server (docs/operations.md).
    metrics_token: str | None = optional(text, check=_strong_token)
    twilio_account_sid: str | None = _provider_alias("TWILIO_ACCOUNT_SID")
    twilio_auth_token: str | None = _provider_alias("TWILIO_AUTH_TOKEN")
    twilio_messaging_service_sid: str | None = _provider_alias("TWILIO_MESSAGING_SERVICE_SID")
    sms_from: str | None = optional(text)
    twilio_base_url: str = setting("https://api.twilio.com", text)

    # name -> declaration: each field's default, conversion and bounds (pydantic's name, so the
    # code that reads a default, `Settings.model_fields["x"].default`, reads it the same way).
    model_fields: ClassVar[dict[str, Setting]]
    # The fields given a value (by the environment, the file or the caller), not defaulted.
    model_fields_set: frozenset[str]

    def __init__(self, **values: Any) -> None:
        self._set(from_environment(self.model_fields, ENV_PREFIX, os.environ) | values)

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> Settings:
        """Settings from these values only (the environment is not read)."""
        settings = cls.__new__(cls)
        settings._set(values)
        return settings

    def _set(self, values: dict[str, Any]) -> None:
        name_of = {alias: name for name, f in self.model_fields.items() for alias in f.aliases}
        given = {name_of.get(key, key): value for key, value in values.items()}
        problems = [
            (key, "Extra inputs are not permitted") for key in given if key not in self.model_fields
        ]
        for name, field in self.model_fields.items():
            try:
                value = field.read(given[name]) if name in given else field.default
            except Invalid as exc:
                problems.append((name, str(exc)))
                continue
            object.__setattr__(self, name, value)
        if problems:
            raise SettingsError(problems)
        object.__setattr__(self, "model_fields_set", frozenset(given))

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Settings:
        """A copy with some values replaced (checked like the others)."""
        values = {name: getattr(self, name) for name in self.model_fields_set}
        return Settings.from_values(values | (update or {}))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"settings are read once and frozen; cannot set {name}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.model_fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Settings) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in sorted(self.model_fields_set)
        )
        return f"Settings({shown})"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


Settings.model_fields = {
    name: value for name, value in vars(Settings).items() if isinstance(value, Setting)
}


def load_settings(folder: Path | None = None, **overrides: Any) -> Settings:
    """Read settings once: explicit overrides > environment > campaign.toml > defaults."""
    file_values: dict[str, Any] = {}
    path = (folder or Path.cwd()) / SETTINGS_FILE
    if path.exists():
        import tomllib  # only a folder with a campaign.toml pays for the parser (#18)

        try:
            file_values = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    from_environment_ = from_environment(Settings.model_fields, ENV_PREFIX, os.environ)
    try:
        return Settings.from_values(file_values | from_environment_ | overrides)
    except SettingsError as exc:
        raise ConfigError(_describe(exc, path if file_values else None)) from exc


def _describe(exc: SettingsError, path: Path | None) -> str:
    where = f" (environment or {path})" if path else " (environment)"
    lines = [f"invalid settings{where}:"]
    lines += [f"  {name}: {message}" for name, message in exc.problems]
    return "\n".join(lines)
