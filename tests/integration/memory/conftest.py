"""Fixtures of the memory tests: the real local embedder (built once per session) and the
vector index that belongs to the test's database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from carrier.memory.embeddings.base import Embedder
from carrier.memory.embeddings.registry import create_embedder
from carrier.memory.vectors.base import VectorIndex
from carrier.memory.vectors.pgvector_index import PgVectorIndex
from carrier.memory.vectors.sqlite_index import SQLiteVectorIndex
from carrier.settings import EmbeddingSettings
from carrier.store.store import Store


@pytest.fixture(scope="session")
def minilm_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model cache of the session (``embeddings.cache_dir``)."""
    return Path(tmp_path_factory.mktemp("minilm"))


@pytest.fixture(scope="session")
def minilm(minilm_cache: Path) -> Iterator[Embedder]:
    """all-MiniLM-L6-v2 on ONNX Runtime, as configured by default (one build a session)."""
    yield create_embedder(EmbeddingSettings(cache_dir=minilm_cache))


@pytest.fixture
async def vector_index(store: Store) -> AsyncIterator[VectorIndex]:
    """The default vector index of the test's database (sqlite or pgvector)."""
    index: VectorIndex = (
        PgVectorIndex(store.engine)
        if store.dialect == "postgresql"
        else SQLiteVectorIndex(store.engine)
    )
    yield index
    await index.aclose()
