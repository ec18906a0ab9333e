"""How one setting is declared, read and checked (engine/settings.py declares them all).

The settings are flat values (text, numbers, paths, durations), read at every start-up.
pydantic did this and cost every command about 100 ms to import and build (#18); this is
the small part of it the settings use, with the same messages ("Input should be greater
than or equal to 1"), so `campaign` reports a bad value exactly as before.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from engine.definitions.duration_text import parse_duration


class SettingsError(ValueError):
    """Bad setting values: every (field, message) found, not only the first."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = [f"{len(problems)} invalid setting(s)"]
        lines += [f"  {name}: {message}" for name, message in problems]
        super().__init__("\n".join(lines))


class Invalid(ValueError):
    """A value a converter refuses; its text is the whole message (no "Value error, ")."""


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid("Input should be a valid string")
    return value


def integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise Invalid(
                "Input should be a valid integer, unable to parse string as an integer"
            ) from None
    raise Invalid("Input should be a valid integer")


def number(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise Invalid(
                "Input should be a valid number, unable to parse string as a number"
            ) from None
    raise Invalid("Input should be a valid number")


def path(value: Any) -> Path:
    if isinstance(value, str | os.PathLike):
        return Path(value)
    raise Invalid("Input is not a valid path")


@dataclass(frozen=True)
class Setting:
    """One setting: its default, how a value given as text (or TOML) becomes its type, and
    the bounds it must respect. ``check`` is a field's own rule: it returns the value to keep
    or raises ValueError with what is wrong."""

    default: Any
    convert: Callable[[Any], Any]
    optional: bool = False
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    min_length: int | None = None
    # Other names the value may come under, read first (a provider's own, SENDGRID_API_KEY).
    aliases: tuple[str, ...] = ()
    check: Callable[[Any], Any] | None = None

    def read(self, value: Any) -> Any:
        """The value checked and converted; raises ValueError with pydantic's wording."""
        if value is None and self.optional:
            return None
        try:
            value = self.convert(value)
        except Invalid:
            raise
        except ValueError as exc:  # a parser's own message (a duration)
            raise Invalid(f"Value error, {exc}") from None
        self._within_bounds(value)
        if self.check is not None:
            try:
                value = self.check(value)
            except ValueError as exc:
                raise Invalid(f"Value error, {exc}") from None
        return value

    def _within_bounds(self, value: Any) -> None:
        if self.ge is not None and value < self.ge:
            raise Invalid(f"Input should be greater than or equal to {_shown(self.ge)}")
        if self.gt is not None and value <= self.gt:
            raise Invalid(f"Input should be greater than {_shown(self.gt)}")
        if self.le is not None and value > self.le:
            raise Invalid(f"Input should be less than or equal to {_shown(self.le)}")
        if self.min_length is not None and len(value) < self.min_length:
            raise Invalid(f"String should have at least {self.min_length} characters")


def _shown(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def setting(default: Any, convert: Callable[[Any], Any], **options: Any) -> Any:
    """A field's declaration (typed Any, so `x: int = setting(90, integer, ge=1)` checks)."""
    return Setting(default, convert, **options)


def optional(convert: Callable[[Any], Any], **options: Any) -> Any:
    """A setting that is unset (None) unless given."""
    return Setting(None, convert, optional=True, **options)


def duration(default: timedelta, *, seconds: bool = False) -> Any:
    """A duration setting: '36h', '7d'; with ``seconds`` also '90s', '1m30s'."""
    return Setting(default, lambda value: parse_duration(value, seconds=seconds))


def from_environment(
    fields: dict[str, Setting], prefix: str, environ: os._Environ[str] | dict[str, str]
) -> dict[str, str]:
    """The fields set in the environment, by field name. Names match in any case (as
    pydantic-settings did); a field's aliases are read first, then PREFIX + its name."""
    environment = {name.lower(): value for name, value in environ.items()}
    values: dict[str, str] = {}
    for name, field in fields.items():
        for candidate in (*field.aliases, prefix + name):
            if candidate.lower() in environment:
                values[name] = environment[candidate.lower()]
                break
    return values
