"""Chroma answers small filtered searches exactly (its HNSW graph once missed one of 30
filtered vectors); large unfiltered ones still go through the graph."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from carrier.memory.vectors.base import VectorItem

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("chromadb") is None, reason="chromadb is not installed"
)

COUNT = 2000  # at most chroma_index.EXACT_UP_TO: searched exactly


def unit(rng: np.random.Generator, count: int, dim: int = 32) -> np.ndarray:
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


async def test_filtered_searches_of_a_small_collection_are_exact(tmp_path: Path) -> None:
    """With a deliberately weak graph (ef_search 10) the graph search misses some of these
    top-100s (it did in 2 of 20 searches before the exact path existed)."""
    from carrier.memory.vectors.chroma_index import EXACT_UP_TO, ChromaVectorIndex

    assert COUNT <= EXACT_UP_TO
    rng = np.random.default_rng(11)
    vectors = unit(rng, COUNT)
    agents = ["fish", "salmon"]
    index = ChromaVectorIndex(tmp_path / "chroma", ef_search=10)
    try:
        await index.upsert(
            [
                VectorItem(i + 1, agents[i % 2], f"u{i % 7}", "g1", "m", vectors[i])
                for i in range(COUNT)
            ]
        )
        for query in unit(rng, 10):
            for a, agent in enumerate(agents):
                mine = np.arange(a, COUNT, 2)
                scores = vectors[mine] @ query
                order = np.argsort(-scores, kind="stable")[:100]
                hits = await index.search(agent, query, 100, model="m")
                assert [h.id for h in hits] == [int(mine[j]) + 1 for j in order]
                assert [h.score for h in hits] == pytest.approx(scores[order], abs=1e-5)
            user_hits = await index.search("fish", query, 5, model="m", user_id="u0")
            users = [i for i in range(0, COUNT, 2) if i % 7 == 0]
            best = sorted(users, key=lambda i: -float(vectors[i] @ query))[:5]
            assert [h.id for h in user_hits] == [i + 1 for i in best]
    finally:
        await index.aclose()
