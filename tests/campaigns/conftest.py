"""Fixtures of the campaign tests; helpers live in helpers.py."""

from __future__ import annotations

import pytest

from engine.app import App
from engine.db.models import Program
from engine.testing.fakes import make_program

from .helpers import TEST_NOW, unit


@pytest.fixture
def program(app: App) -> Program:
    with unit(app) as session:
        return make_program(session, at=TEST_NOW)
