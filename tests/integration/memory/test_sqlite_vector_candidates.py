"""The sqlite backend's own mechanics, beyond the shared contract: the sign-bit candidate
pool (exercised here with a pool smaller than the index), the scan in a worker thread, and
what the in-memory copy costs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from carrier.memory.vectors import sqlite_index
from carrier.memory.vectors.base import VectorItem
from carrier.memory.vectors.sqlite_candidates import sign_bits
from carrier.memory.vectors.sqlite_index import SQLiteVectorIndex
from carrier.store.database import Database, create_engine
from carrier.store.migrate import upgrade

MODEL = "m"


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'v.db'}"))
    await upgrade(database)
    yield database
    await database.dispose()


def unit(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def items(vectors: np.ndarray) -> list[VectorItem]:
    return [
        VectorItem(i + 1, "fish", f"u{i % 7}", None if i % 3 else "g", MODEL, v)
        for i, v in enumerate(vectors)
    ]


def test_sign_bits_pack_one_bit_per_dimension_into_words() -> None:
    vectors = np.array([[1, -1, 0.5] + [-1] * 61 + [1], [-1] * 65], dtype=np.float32)
    bits = sign_bits(vectors)
    assert bits.dtype == np.uint64 and bits.shape == (2, 2)
    assert sign_bits(vectors[0]).shape == (2,)
    assert np.bitwise_count(bits[0]).sum() == 3
    assert np.bitwise_count(bits[1]).sum() == 0


@pytest.mark.parametrize("thread_above", [10**9, 0])
async def test_candidates_from_a_pool_smaller_than_the_index(
    database: Database, monkeypatch: pytest.MonkeyPatch, thread_above: int
) -> None:
    monkeypatch.setattr(sqlite_index, "THREAD_ABOVE", thread_above)
    monkeypatch.setattr(sqlite_index, "LOAD_BATCH", 700)  # the load below takes 5 chunks
    rng = np.random.default_rng(1)
    vectors = unit(rng, 3000, 128)
    writer = SQLiteVectorIndex(database)
    await writer.upsert_many(items(vectors), batch_size=500)
    await writer.aclose()
    index = SQLiteVectorIndex(database, min_candidates=40)

    for source in rng.choice(3000, size=25, replace=False):
        query = vectors[source] + 0.02 * unit(rng, 1, 128)[0]
        hits = await index.search("fish", query, 1, model=MODEL)
        exact = vectors[source] @ (query / np.linalg.norm(query))
        assert [h.id for h in hits] == [int(source) + 1]
        assert hits[0].score == pytest.approx(float(exact), abs=1e-5)
        # Filters apply before the pool is taken: the user's best is found among its rows.
        user = f"u{source % 7}"
        by_user = await index.search("fish", query, 1, model=MODEL, user_id=user)
        assert [h.id for h in by_user] == [int(source) + 1]
    await index.aclose()


async def test_the_in_memory_copy_is_64_bytes_a_vector_at_384_dimensions(
    database: Database,
) -> None:
    rng = np.random.default_rng(2)
    index = SQLiteVectorIndex(database)
    await index.upsert(items(unit(rng, 500, 384)))
    await index.search("fish", unit(rng, 1, 384)[0], 5, model=MODEL)

    # id (8) + user code (4) + guild code (4) + 384 sign bits (48)
    assert index.memory_bytes() == 500 * 64
    await index.aclose()
    assert index.memory_bytes() == 0


async def test_refuses_a_postgresql_database() -> None:
    engine = create_engine("postgresql+asyncpg://nobody@localhost/none")
    try:
        with pytest.raises(ValueError, match="needs a SQLite database"):
            SQLiteVectorIndex(Database(engine))
    finally:
        await engine.dispose()
