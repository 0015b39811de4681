"""Embedding providers: a name in the configuration (``embeddings.provider``) maps to
``"module:Class"``, imported only when that provider is configured, so an unused model or SDK
is never loaded.

A new provider is one module with a class implementing
:class:`~carrier.memory.embeddings.base.Embedder` and the classmethod
``from_settings(settings: EmbeddingSettings, environ: Mapping[str, str] | None)``, plus one
line in :data:`EMBEDDERS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from carrier.memory.embeddings.base import Embedder
from carrier.settings import EmbeddingSettings

EMBEDDERS: dict[str, str] = {
    "minilm-onnx": "carrier.memory.embeddings.onnx_minilm:OnnxMiniLM",
    "openai": "carrier.memory.embeddings.openai_compatible:OpenAICompatibleEmbedder",
}


def embedder_class(name: str) -> type[Any]:
    """The class registered for ``name`` (imports its module now)."""
    try:
        target = EMBEDDERS[name]
    except KeyError:
        known = ", ".join(sorted(EMBEDDERS))
        raise ValueError(f"unknown embeddings provider {name!r}; known: {known}") from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)  # type: ignore[no-any-return]


def create_embedder(
    settings: EmbeddingSettings, environ: Mapping[str, str] | None = None
) -> Embedder:
    """The embedder ``settings`` configures.

    ``environ`` holds API keys (default: the environment over ``.env``).  Raises
    :class:`~carrier.memory.embeddings.base.EmbeddingUnavailable` when the model cannot be
    loaded and :class:`~carrier.settings.ConfigError` for a missing key or vector size.  The
    local model may take a few seconds to load (and, on the very first start, to build), so
    async code calls this through ``asyncio.to_thread``.
    """
    embedder: Embedder = embedder_class(settings.provider).from_settings(settings, environ)
    return embedder
