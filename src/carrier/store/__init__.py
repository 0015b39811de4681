"""Persistence: schema, migrations and repositories over SQLAlchemy 2 (async)."""
