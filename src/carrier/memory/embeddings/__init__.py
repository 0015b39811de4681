"""Embeddings: text -> unit vectors, behind one interface.

==========================  ====================================================================
module                      concept
==========================  ====================================================================
``base``                    the ``Embedder`` protocol (the contract), ``EmbeddingError`` and
                            ``EmbeddingUnavailable``
``onnx_minilm``             the default: all-MiniLM-L6-v2 on ONNX Runtime (int8), local, offline
``minilm_graph``            builds that model's ONNX graph from its safetensors weights
``openai_compatible``       an OpenAI-compatible ``/v1/embeddings`` endpoint (``openai`` SDK)
``registry``                provider name -> ``module:Class``; ``create_embedder(settings)``
==========================  ====================================================================

Importing this package loads no model, runtime or SDK::

    from carrier.memory.embeddings import create_embedder

    embedder = await asyncio.to_thread(create_embedder, settings.embeddings)
    vectors = await embedder.embed(["I have a cat named Biscuit", "my cat is called Biscuit"])
    similarity = float(vectors[0] @ vectors[1])  # cosine: higher is more similar
    await embedder.aclose()
"""

from __future__ import annotations

from carrier.memory.embeddings.base import (
    Embedder,
    EmbeddingError,
    EmbeddingUnavailable,
    Vectors,
)
from carrier.memory.embeddings.registry import create_embedder

__all__ = [
    "Embedder",
    "EmbeddingError",
    "EmbeddingUnavailable",
    "Vectors",
    "create_embedder",
]
