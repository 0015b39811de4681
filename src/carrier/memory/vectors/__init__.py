"""Vector search over long-term fact vectors: one ``VectorIndex`` interface, three backends
(sqlite, the default of the SQLite deployment; pgvector; chroma), chosen by settings through
:func:`create_vector_index`.  Backend modules are imported only when chosen."""

from carrier.memory.vectors.base import Hit, VectorIndex, VectorItem
from carrier.memory.vectors.registry import BACKENDS, create_vector_index

__all__ = ["BACKENDS", "Hit", "VectorIndex", "VectorItem", "create_vector_index"]
