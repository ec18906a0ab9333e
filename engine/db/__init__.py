"""Database adapter: typed models, engine/session factory, migrations."""
