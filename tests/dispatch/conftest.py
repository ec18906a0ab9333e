"""Fixtures of the dispatch tests that need PostgreSQL by nature (several dispatchers on one
database, the rate limit shared through it): SQLite runs one dispatcher per database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from postgres_databases import FreshPostgresDatabases


@pytest.fixture
def postgres_url(postgres_databases: FreshPostgresDatabases) -> Iterator[str]:
    """A fresh migrated PostgreSQL database, dropped afterwards."""
    url = postgres_databases.take()
    yield url
    postgres_databases.drop_later(url)
