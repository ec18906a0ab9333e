"""Fixtures of the sequencing tests; helpers live in seq_helpers.py."""

from __future__ import annotations

import pytest
from seq_helpers import TEST_NOW, unit

from engine.app import App
from engine.db.models import Program
from engine.testing.fakes import make_program


@pytest.fixture
def program(app: App) -> Program:
    with unit(app) as session:
        return make_program(session, at=TEST_NOW)
