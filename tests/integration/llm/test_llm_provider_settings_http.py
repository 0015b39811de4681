"""Each provider's settings, end to end: from the config through ``LLMGenerator.from_settings``
and the official SDKs to what the scripted server received."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from carrier.generation.llm.base import AllProvidersFailed, ProviderTimeout
from carrier.generation.llm.generator import LLMGenerator
from carrier.generation.llm.prompt import MESSAGE_OVERHEAD_TOKENS
from carrier.generation.llm.tokens import count_paragraphs, token_counter_for
from carrier.generation.request import ReplyRequest
from carrier.persona.service import Persona
from carrier.settings import LLMSettings
from carrier.store.messages import LoggedMessage
from carrier.testing import llm_server as fake
from carrier.testing.llm_server import RecordedRequest, ScriptedLLMServer

RNG = random.Random(3)
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-scripted-1"}


def settings_for(
    kind: str, server: ScriptedLLMServer, *, context_window: int, timeout: float = 5.0
) -> LLMSettings:
    return LLMSettings.model_validate(
        {
            "providers": [
                {
                    "kind": kind,
                    "model": MODELS[kind],
                    "base_url": server.openai_base_url if kind == "openai" else server.url,
                    "api_key_env": "TEST_KEY",
                    "max_tokens": 137,
                    "temperature": 0.33,
                    "context_window": context_window,
                    "timeout_seconds": timeout,
                }
            ]
        }
    )


def generator(settings: LLMSettings) -> LLMGenerator:
    keys = {p.name: SecretStr("sk-test") for p in settings.providers}
    return LLMGenerator.from_settings(settings, keys)


def long_request() -> ReplyRequest:
    transcript = [
        LoggedMessage(
            agent_id="fish",
            channel_id="c",
            message_id=f"m{i}",
            author_id="bob",
            author_name="Bob",
            text=f"line {i:03d}: " + "the river runs on and on past the mill " * 4,
            created_at=NOW - timedelta(minutes=300 - i),
        )
        for i in range(300)
    ]
    return ReplyRequest(
        purpose="reply",
        agent_id="fish",
        persona=Persona(name="Finnegan", traits=("curious",)),
        message_text="fish, still there?",
        author_name="Alice",
        transcript=transcript,
    )


def prompt_tokens(received: RecordedRequest, model: str) -> int:
    count = token_counter_for(model)
    return count_paragraphs(count, received.system) + sum(
        count(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in received.messages
    )


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_max_tokens_and_temperature_reach_the_request(
    server: ScriptedLLMServer, kind: str
) -> None:
    gen = generator(settings_for(kind, server, context_window=8192))
    try:
        await gen.generate(long_request(), RNG)
    finally:
        await gen.aclose()
    body = server.requests[-1].body
    assert body["max_tokens"] == 137
    if kind == "openai":
        assert body["temperature"] == pytest.approx(0.33)
    else:
        # This Anthropic API version rejects sampling parameters (see anthropic_chat).
        assert "temperature" not in body


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_the_prompt_budget_follows_the_context_window(
    server: ScriptedLLMServer, kind: str
) -> None:
    sizes: dict[int, int] = {}
    for window in (1024, 4096):
        gen = generator(settings_for(kind, server, context_window=window))
        try:
            await gen.generate(long_request(), RNG)
        finally:
            await gen.aclose()
        received = server.requests[-1]
        assert prompt_tokens(received, MODELS[kind]) <= window - 137
        assert "the river runs on" in "".join(m["content"] for m in received.messages)
        sizes[window] = sum(len(m["content"]) for m in received.messages)
    # Four times the window: well over three times the transcript (the system part is fixed).
    assert sizes[4096] > 3 * sizes[1024]


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_stall_longer_than_the_timeout_falls_back(
    server: ScriptedLLMServer, kind: str
) -> None:
    server.script(fake.stall(30))
    gen = generator(settings_for(kind, server, context_window=8192, timeout=0.3))
    try:
        with pytest.raises(AllProvidersFailed) as failed:
            await gen.generate(long_request(), RNG)
        assert [type(e) for e in failed.value.errors] == [ProviderTimeout]
        # The provider is asked again for the next message, and answers.
        answered = await gen.generate(long_request(), RNG)
    finally:
        await gen.aclose()
    assert answered.text == "Blub."
    assert answered.source == f"llm:{kind}:{MODELS[kind]}"
