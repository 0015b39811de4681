"""The provider registry: a kind names a class, imported only when it is used."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import SecretStr

from carrier.generation.llm.anthropic_chat import AnthropicChat
from carrier.generation.llm.openai_chat import OpenAIChat
from carrier.generation.llm.registry import PROVIDERS, create_providers, provider_class
from carrier.settings import ProviderSettings


def test_importing_the_llm_package_and_registry_loads_no_sdk() -> None:
    code = (
        "import sys\n"
        "import carrier.generation.llm.registry, carrier.generation.llm.generator\n"
        "print(sorted(m for m in ('openai', 'anthropic', 'tiktoken') if m in sys.modules))\n"
        "carrier.generation.llm.registry.provider_class('anthropic')\n"
        "print(sorted(m for m in ('openai', 'anthropic') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines() == ["[]", "['anthropic']"]


def test_each_kind_maps_to_its_class() -> None:
    assert set(PROVIDERS) == {"openai", "anthropic"}
    assert provider_class("openai") is OpenAIChat
    assert provider_class("anthropic") is AnthropicChat


def test_an_unknown_kind_is_named() -> None:
    with pytest.raises(ValueError, match="unknown LLM provider kind 'gemini'; known: anthropic"):
        provider_class("gemini")


async def test_providers_are_built_from_settings_in_order() -> None:
    settings = [
        ProviderSettings(kind="anthropic", model="claude-scripted-1"),
        ProviderSettings(
            kind="openai",
            name="ollama",
            model="llama3",
            base_url="http://127.0.0.1:9/v1",
            api_key_env=None,
            timeout_seconds=3,
        ),
    ]
    providers = create_providers(settings, {"anthropic": SecretStr("k"), "ollama": None})
    try:
        assert [(p.name, p.model, type(p)) for p in providers] == [
            ("anthropic", "claude-scripted-1", AnthropicChat),
            ("ollama", "llama3", OpenAIChat),
        ]
    finally:
        for provider in providers:
            await provider.aclose()
