"""The vector backends by name: ``name -> "module:Class"``, imported only when chosen.

A new backend is one module with a ``VectorIndex`` subclass that has a
``create(settings, database)`` classmethod, and one line here.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from carrier.memory.vectors.base import VectorIndex

if TYPE_CHECKING:
    from carrier.settings import Settings
    from carrier.store.store import Store

BACKENDS: dict[str, str] = {
    "sqlite": "carrier.memory.vectors.sqlite_index:SQLiteVectorIndex",
    "pgvector": "carrier.memory.vectors.pgvector_index:PgVectorIndex",
    "chroma": "carrier.memory.vectors.chroma_index:ChromaVectorIndex",
}

# Backends that keep their vectors in the database itself, and the database each needs.
_NEEDS_DATABASE = {"sqlite": "sqlite", "pgvector": "postgresql"}


def backend_class(name: str) -> type[VectorIndex]:
    """The class registered as ``name`` (imported now)."""
    try:
        target = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ValueError(f"unknown vector backend {name!r}; known: {known}") from None
    module_name, _, class_name = target.partition(":")
    cls: type[VectorIndex] = getattr(import_module(module_name), class_name)
    return cls


def create_vector_index(settings: Settings, store: Store) -> VectorIndex:
    """The vector index the settings ask for (``vectors.backend``; unset: by database)."""
    name = settings.vectors.backend_for(settings.effective_database_url)
    dialect = store.dialect
    needed = _NEEDS_DATABASE.get(name)
    if needed is not None and dialect != needed:
        raise ValueError(
            f"vectors.backend {name!r} keeps vectors in a {needed} database, but the database "
            f"is {dialect}; leave vectors.backend unset to choose by database"
        )
    cls = backend_class(name)
    create = getattr(cls, "create")  # noqa: B009 - every backend defines it, see above
    index: VectorIndex = create(settings.vectors, store.engine)
    return index
