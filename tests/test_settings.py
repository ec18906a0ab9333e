from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("CAMPAIGN_", "SENDGRID_", "TWILIO_")):
            monkeypatch.delenv(name)


def test_defaults_need_no_configuration(tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    assert settings.database_url == "sqlite:///campaign.db"
    assert settings.default_timezone == "America/New_York"
    assert settings.sendgrid_api_key is None and settings.twilio_account_sid is None


def test_environment_and_provider_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", "postgresql://postgres@127.0.0.1/x")
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.key")
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC123")
    settings = load_settings(tmp_path)
    # A bare postgresql:// URL is pointed at psycopg 3, the driver we ship.
    assert settings.database_url == "postgresql+psycopg://postgres@127.0.0.1/x"
    assert settings.sendgrid_api_key == "SG.key"
    assert settings.twilio_account_sid == "AC123"


def test_campaign_toml_fills_in_and_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "campaign.toml").write_text(
        'default_timezone = "Europe/London"\n'
        'default_region = "GB"\n'
        'sendgrid_api_key = "SG.from-file"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("CAMPAIGN_DEFAULT_REGION", "IE")
    settings = load_settings(tmp_path)
    assert settings.default_timezone == "Europe/London"
    assert settings.default_region == "IE"
    assert settings.sendgrid_api_key == "SG.from-file"


def test_bad_values_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGN_DEFAULT_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ConfigError, match=r"default_timezone: .*Mars/Olympus"):
        load_settings(tmp_path)


def test_unknown_key_in_the_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "campaign.toml").write_text('databse_url = "sqlite://"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"campaign.toml.*\n.*databse_url"):
        load_settings(tmp_path)


def test_broken_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "campaign.toml").write_text("database_url = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"campaign\.toml: not valid TOML"):
        load_settings(tmp_path)


def test_environment_names_match_in_any_case_and_providers_own_name_comes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("campaign_default_region", "GB")
    monkeypatch.setenv("CAMPAIGN_SENDGRID_API_KEY", "SG.prefixed")
    monkeypatch.setenv("CAMPAIGN_TWILIO_AUTH_TOKEN", "prefixed")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "own-name")
    settings = load_settings(tmp_path)
    assert settings.default_region == "GB"
    assert settings.sendgrid_api_key == "SG.prefixed"
    assert settings.twilio_auth_token == "own-name"


def test_explicit_values_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGN_DEFAULT_REGION", "IE")
    monkeypatch.setenv("CAMPAIGN_OUTBOX_DIR", "from-env")
    settings = Settings(outbox_dir=Path("explicit"))
    assert (settings.outbox_dir, settings.default_region) == (Path("explicit"), "IE")
    assert settings.model_fields_set == {"outbox_dir", "default_region"}
    with pytest.raises(ConfigError, match=r"render_workers: .*less than or equal to 32"):
        load_settings(render_workers=33)
