"""Alembic environment; shipped as a package so an installed engine can migrate itself."""
