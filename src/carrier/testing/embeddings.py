"""A deterministic embedder for tests that must not load a model: hashed bag of words.

Same text, same vector; texts sharing words score higher than unrelated ones.  Not
semantic: tests of meaning use the real model (carrier.memory.embeddings).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"[a-z0-9']+")


class HashingEmbedder:
    def __init__(self, dimensions: int = 384, model: str = "test-hashing") -> None:
        self.dimensions = dimensions
        self.model = model

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                index = int.from_bytes(digest[:4], "little") % self.dimensions
                out[row, index] += 1.0 if digest[4] & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
        return out

    async def aclose(self) -> None:
        return None
