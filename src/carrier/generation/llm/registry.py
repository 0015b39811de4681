"""Provider kinds: a name in the configuration maps to ``"module:Class"``, imported only when
a provider of that kind is configured, so an SDK that is not used is never loaded.

A new provider is one module implementing :class:`~carrier.generation.llm.base.LLM` (with
the constructor keywords below) and one line in :data:`PROVIDERS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from carrier.generation.llm.base import LLM
from carrier.settings import ProviderSettings

PROVIDERS: dict[str, str] = {
    "openai": "carrier.generation.llm.openai_chat:OpenAIChat",
    "anthropic": "carrier.generation.llm.anthropic_chat:AnthropicChat",
}


def provider_class(kind: str) -> type[Any]:
    """The class registered for ``kind`` (imports its module now)."""
    try:
        target = PROVIDERS[kind]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ValueError(f"unknown LLM provider kind {kind!r}; known: {known}") from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)  # type: ignore[no-any-return]


def create_provider(settings: ProviderSettings, api_key: SecretStr | None) -> LLM:
    """One provider from its settings.  Providers take these keywords: ``name``, ``model``,
    ``api_key``, ``base_url``, ``timeout_seconds``, ``stream``."""
    cls = provider_class(settings.kind)
    provider: LLM = cls(
        name=settings.name,
        model=settings.model,
        api_key=api_key.get_secret_value() if api_key is not None else None,
        base_url=settings.base_url,
        timeout_seconds=settings.timeout_seconds,
        stream=settings.stream,
    )
    return provider


def create_providers(
    providers: list[ProviderSettings], api_keys: Mapping[str, SecretStr | None]
) -> list[LLM]:
    """The configured chain, in order.  ``api_keys`` comes from
    :func:`carrier.settings.llm_api_keys` (provider name -> key)."""
    return [create_provider(p, api_keys.get(p.name)) for p in providers]
