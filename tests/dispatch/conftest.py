"""Fixtures of the dispatch tests that need PostgreSQL by nature (several dispatchers on one
database, the rate limit shared through it): SQLite runs one dispatcher per database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


@pytest.fixture
def postgres_url(postgres_admin: str, postgres_template: str) -> Iterator[str]:
    """A fresh migrated PostgreSQL database, dropped afterwards."""
    name = f"campaign_d_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_admin, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"'))
    yield make_url(postgres_admin).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
