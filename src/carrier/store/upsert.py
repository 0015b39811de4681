"""``INSERT ... ON CONFLICT`` for the dialect in use (SQLite and PostgreSQL share the API)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite


def insert(table: Table, dialect_name: str) -> Any:
    """An ``Insert`` that supports ``on_conflict_do_update`` / ``on_conflict_do_nothing``."""
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
