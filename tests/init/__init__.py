"""`campaign init` and a coordinator's first hour in a folder of their own."""

from datetime import UTC, datetime

# tests/conftest.py's TEST_NOW (Monday 2 March 2026, 10:00 in New York): tests/ is not a
# package, so its conftest cannot be imported by name from here.
TEST_NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
