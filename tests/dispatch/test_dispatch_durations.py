"""Dispatch durations in settings take seconds (CAMPAIGN_DISPATCH_RETRY_DELAY=2s)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from engine.definitions.durations import format_duration, parse_duration
from engine.errors import ConfigError
from engine.settings import load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("CAMPAIGN_", "SENDGRID_", "TWILIO_")):
            monkeypatch.delenv(name)


def test_retry_delay_and_lease_accept_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAMPAIGN_DISPATCH_RETRY_DELAY", "2s")
    monkeypatch.setenv("CAMPAIGN_DISPATCH_LEASE", "1m30s")
    settings = load_settings(tmp_path)
    assert settings.dispatch_retry_delay == timedelta(seconds=2)
    assert settings.dispatch_lease == timedelta(seconds=90)


def test_a_bad_duration_setting_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAMPAIGN_DISPATCH_RETRY_DELAY", "2 secs")
    with pytest.raises(ConfigError, match="dispatch_retry_delay"):
        load_settings(tmp_path)


def test_campaign_file_durations_still_refuse_seconds() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("30s")
    assert parse_duration("30s", seconds=True) == timedelta(seconds=30)
    assert format_duration(timedelta(seconds=90)) == "90s"
    assert format_duration(timedelta(minutes=2)) == "2m"
