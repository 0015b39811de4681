"""Scripted LLM servers on 127.0.0.1 and providers pointed at them (the official SDKs)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from carrier.generation.llm.anthropic_chat import AnthropicChat
from carrier.generation.llm.base import LLM
from carrier.generation.llm.openai_chat import OpenAIChat
from carrier.testing.llm_server import ScriptedLLMServer

ProviderFactory = Callable[..., LLM]


@pytest.fixture
async def server() -> AsyncIterator[ScriptedLLMServer]:
    async with ScriptedLLMServer() as running:
        yield running


@pytest.fixture
async def make_provider() -> AsyncIterator[ProviderFactory]:
    """``make_provider(kind, server, name=..., stream=..., timeout_seconds=...)``."""
    made: list[LLM] = []

    def make(
        kind: str,
        server: ScriptedLLMServer,
        *,
        name: str | None = None,
        stream: bool = False,
        timeout_seconds: float = 5.0,
        model: str | None = None,
    ) -> LLM:
        provider: LLM
        if kind == "openai":
            provider = OpenAIChat(
                name=name or "openai",
                model=model or "gpt-4o-mini",
                api_key="sk-test",
                base_url=server.openai_base_url,
                timeout_seconds=timeout_seconds,
                stream=stream,
            )
        else:
            provider = AnthropicChat(
                name=name or "anthropic",
                model=model or "claude-scripted-1",
                api_key="sk-ant-test",
                base_url=server.anthropic_base_url,
                timeout_seconds=timeout_seconds,
                stream=stream,
            )
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()
