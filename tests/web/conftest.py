"""Fixtures of the console tests: the shared `app` fixture with this repository's templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        outbox_dir=tmp_path / "outbox",
        templates_dir=ROOT / "templates",
        campaigns_dir=ROOT / "campaigns",
    )
