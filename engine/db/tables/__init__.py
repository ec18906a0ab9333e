"""The schema as SQLAlchemy Core tables, one module per area, all on ``base.metadata``.

The schema changes only through Alembic (migrations/); tests/test_migrations.py checks these
tables against it. The ORM classes of engine/db/models.py map onto these tables. Code that
only reads rows (the everyday commands: `runs list`, `participants show`, `calls next`) uses
the tables directly, so it never pays for importing sqlalchemy.orm and building the mappers
(about a quarter of a second per command; issue #18). Importing this package imports no
table module: import the area you use (``from engine.db.tables import runs``).
"""
