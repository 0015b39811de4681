"""The ``Embedder`` interface: text in, unit vectors out.

Every embedder (one module each, see :mod:`carrier.memory.embeddings.registry`) keeps this
contract:

* ``model`` is a stable name recorded with every stored vector (for example
  ``"all-MiniLM-L6-v2/onnx-int8"``); vectors with different names are never compared.
* ``dimensions`` is the length of every vector it returns.
* ``await embed(texts)`` returns a float32 array of shape ``(len(texts), dimensions)``, row
  ``i`` for ``texts[i]``, each row L2-normalised, so the dot product of two rows is their
  cosine similarity: higher means more similar.  An empty input gives shape
  ``(0, dimensions)``.
* No text makes it raise: empty, whitespace-only, emoji-only, control characters or 100 kB
  of text each give a vector.  Text longer than the model reads is truncated (the local
  MiniLM model reads the first 256 wordpieces).
* It never blocks the event loop: local inference runs in a worker thread.
* A model that cannot be loaded or an endpoint that cannot be reached raises
  :class:`EmbeddingUnavailable`, whose message says what to do (for a missing package: the
  ``pip install`` line naming it).  Other failures raise :class:`EmbeddingError`.
* ``await aclose()`` releases the model or the HTTP client; calling it twice is fine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


class EmbeddingError(Exception):
    """Embedding failed; the message is meant for the operator, as is."""


class EmbeddingUnavailable(EmbeddingError):
    """The model cannot be loaded or the endpoint cannot be used (now): a missing package or
    model file, an unreachable or refusing server.  The message says how to fix it."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors.  See the module docstring."""

    model: str
    dimensions: int

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """Shape ``(len(texts), dimensions)``, float32, unit rows; never raises for odd text."""
        ...

    async def aclose(self) -> None:
        """Release the model or client (idempotent)."""
        ...


def empty_vectors(dimensions: int) -> Vectors:
    """The answer to an empty input: shape ``(0, dimensions)``."""
    return np.zeros((0, dimensions), dtype=np.float32)


def l2_normalise(vectors: npt.NDArray[np.floating]) -> Vectors:
    """Each row scaled to length 1 (a zero row stays zero rather than becoming NaN)."""
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.ascontiguousarray(array / np.maximum(norms, np.float32(1e-12)), dtype=np.float32)


def require(package: str, module: str | None = None, *, purpose: str) -> None:
    """Raise :class:`EmbeddingUnavailable` naming ``package`` unless ``module`` (default: the
    package's import name) can be imported."""
    import importlib.util

    name = module or package.replace("-", "_")
    if importlib.util.find_spec(name) is None:
        raise EmbeddingUnavailable(
            f"{purpose} needs the Python package {package!r}, which is not installed: "
            f"pip install {package}"
        )
